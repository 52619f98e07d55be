"""``python -m dojo.train`` and ``torchrun ... -m dojo.train``: see :mod:`dojo.train.launch`."""

from dojo.train.launch import main

raise SystemExit(main())
