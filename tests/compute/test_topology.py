"""The hierarchy from the chips up: published headline figures fall out, blocks are named and found."""

from __future__ import annotations

import pytest

from dojo.compute.specs import load_family, packaged_families
from dojo.compute.topology import Topology, parse_system
from dojo.errors import DojoConfigError

DOJO = load_family("dojo.toml")


def test_every_figure_has_a_source() -> None:
    for family in packaged_families().values():
        for i, level in enumerate(family.levels):
            if i == 0:
                for prec in level.tflops:
                    assert family.sources[f"{level.name}.tflops.{prec}"]
                for fig in ("power_w", "memory_gb", "uplink_gbs"):
                    assert family.sources[f"{level.name}.{fig}"]
            else:
                assert family.sources[f"{level.name}.fanout"]
                assert family.sources[f"{level.name}.uplink_gbs"]


def test_exapod_headlines_fall_out_of_the_d1() -> None:
    pod = Topology(DOJO, "exapod")
    h = DOJO.headlines
    assert pod.total_chips == h["exapod_chips"] == 3000
    assert pod.blocks_at("tile") == 120
    # 3,000 x 362 TFLOPS = 1.086 EFLOPS, published as "1.1 EFLOPS"
    assert pod.peak_tflops("exapod", "bf16") == pytest.approx(3000 * 362.0)
    assert pod.peak_tflops("exapod", "bf16") / 1e6 == pytest.approx(
        h["exapod_bf16_eflops"], rel=0.02
    )
    assert pod.peak_tflops("tile", "bf16") / 1e3 == pytest.approx(h["tile_bf16_pflops"], rel=0.01)
    assert pod.peak_tflops("tray", "bf16") / 1e3 == pytest.approx(h["tray_bf16_pflops"], rel=0.01)
    assert pod.peak_tflops("cabinet", "bf16") / 1e3 == pytest.approx(
        h["cabinet_bf16_pflops"], rel=0.02
    )
    assert pod.sram_gb("tile") == pytest.approx(h["tile_sram_gb"], rel=0.01)
    assert pod.sram_gb("exapod") / 1e3 == pytest.approx(h["exapod_sram_tb"], rel=0.03)
    assert pod.dram_gb("exapod") / 1e3 == pytest.approx(h["exapod_dram_tb"], rel=0.03)
    assert pod.power_w("tile") / 1e3 == pytest.approx(h["tile_power_kw"], rel=0.01)
    assert pod.dram_gb("tile") == 0.0  # the DRAM sits at the interface processors of a tray


def test_gpu_node_headlines() -> None:
    for name, family in (("h100", load_family("h100.toml")), ("a100", load_family("a100.toml"))):
        node = Topology(family, f"{name}-node")
        assert node.total_chips == 8
        assert node.peak_tflops("node", "bf16") / 1e3 == pytest.approx(
            family.headlines["node_bf16_pflops"], rel=0.01
        )
        assert node.power_w("node") / 1e3 == pytest.approx(
            family.headlines["node_power_kw"], rel=0.01
        )
    h100 = Topology(load_family("h100.toml"), "h100-node")
    assert h100.sram_gb("node") == pytest.approx(640.0)
    assert h100.peak_tflops("gpu", "bf16") == 989.0


def test_block_names_round_trip_and_enumerate() -> None:
    pod = Topology(DOJO, "exapod")
    tile = pod.find("exapod0/cabinet3/tray1/tile4")
    # cabinet 3 -> 3 x 12 tiles, tray 1 -> + 6, tile 4 -> + 4: tile 46, chips 1150..1174
    assert (tile.level, tile.index) == (1, 46)
    assert tile.chips == range(1150, 1175)
    assert pod.block("tile", 46).name == "exapod0/cabinet3/tray1/tile4"
    names = [b.name for b in pod.blocks("tray")]
    assert len(names) == len(set(names)) == 20
    assert names[:3] == [
        "exapod0/cabinet0/tray0",
        "exapod0/cabinet0/tray1",
        "exapod0/cabinet1/tray0",
    ]
    for level in range(pod.top + 1):
        blocks = list(pod.blocks(level))
        assert sum(len(b.chips) for b in blocks) == pod.total_chips
        assert all(pod.find(b.name) == b for b in blocks[:: max(1, len(blocks) // 7)])
    assert pod.block(0, 2999).name == "exapod0/cabinet9/tray1/tile5/chip24"


def test_several_units_and_system_references() -> None:
    nodes = parse_system("h100-node:64")
    assert nodes.total_chips == 512 and nodes.name == "h100-node:64"
    assert nodes.block("node", 63).name == "node63"
    assert parse_system("tile").total_chips == 25
    assert parse_system("exapod:2").find("exapod1/cabinet0").chips.start == 3000


@pytest.mark.parametrize("ref", ["nonsense", "h100-node:0", "exapod:-1", "H100 node", ""])
def test_unknown_systems_are_one_clear_error(ref: str) -> None:
    with pytest.raises(DojoConfigError, match="system="):
        parse_system(ref)


def test_bad_block_names_and_precisions() -> None:
    pod = Topology(DOJO, "exapod")
    with pytest.raises(DojoConfigError, match="cabinet0..cabinet9"):
        pod.find("exapod0/cabinet10")
    with pytest.raises(DojoConfigError, match="not a path"):
        pod.find("")
    with pytest.raises(DojoConfigError, match="precision='fp16'.*bf16, cfp8, fp32"):
        pod.peak_tflops("tile", "fp16")
    with pytest.raises(DojoConfigError, match="precision='fp8'"):
        parse_system("a100-node").peak_tflops(0, "fp8")
