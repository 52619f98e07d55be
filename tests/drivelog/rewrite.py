"""Copying a drive log with the official mcap writer, one thing changed: how tests make bad logs."""

from __future__ import annotations

import json
from pathlib import Path

from mcap.reader import make_reader
from mcap.writer import CompressionType, Writer


def rewrite(
    src: Path,
    dst: Path,
    drop: tuple[str, ...] = (),
    extra_channel: bool = False,
    spoil_video_at: int | None = None,
    tag: str = "",
    replace: tuple[str, int, bytes] | None = None,
) -> None:
    """Copy a drive log record by record with the official mcap writer, changing one thing.

    ``replace``: (topic, n, data) puts ``data`` in place of the n-th message on ``topic``.
    """
    with open(src, "rb") as f, open(dst, "wb") as g:
        reader = make_reader(f)
        summary = reader.get_summary()
        assert summary is not None
        writer = Writer(g, compression=CompressionType.ZSTD)
        writer.start()
        schema_ids = {
            sid: writer.register_schema(s.name, s.encoding, s.data)
            for sid, s in summary.schemas.items()
        }
        channel_ids = {
            cid: writer.register_channel(
                c.topic, c.message_encoding, schema_ids[c.schema_id], c.metadata
            )
            for cid, c in summary.channels.items()
            if c.topic not in drop
        }
        if extra_channel:
            lidar = writer.register_schema("acme.LidarScan", "jsonschema", b"{}")
            channel_ids[-1] = writer.register_channel("/lidar", "json", lidar)
            writer.add_message(channel_ids[-1], log_time=0, publish_time=0, data=b"{}")
        frame = 0
        seen: dict[str, int] = {}
        for _, channel, message in reader.iter_messages():
            if channel.topic in drop:
                continue
            data = message.data
            if spoil_video_at is not None and channel.topic == "/camera/front":
                if frame == spoil_video_at:
                    record = json.loads(data)
                    record["data"] = "AAAA" * 40  # zero bytes: no NAL unit at all
                    data = json.dumps(record).encode()
                frame += 1
            n = seen[channel.topic] = seen.get(channel.topic, -1) + 1
            if replace is not None and (channel.topic, n) == replace[:2]:
                data = replace[2]
            writer.add_message(
                channel_ids[channel.id],
                log_time=message.log_time,
                publish_time=message.publish_time,
                data=data,
                sequence=message.sequence,
            )
        for m in reader.iter_metadata():
            writer.add_metadata(m.name, m.metadata)
        if tag:  # a distinct file with the same drive in it
            writer.add_metadata("copy", {"tag": tag})
        writer.finish()
