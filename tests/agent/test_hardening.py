"""Review fixes: crafted bundles, a full disk and a retained model/set never stop the agent."""

from __future__ import annotations

import struct
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.app import App
from agent.bundle import (
    DEFAULT_MAX_BUNDLE_BYTES,
    MAX_BUNDLE_BYTES,
    BundleError,
    Golden,
    load_bundle,
    read_bundle,
)
from agent.config import parse_config
from agent.features.traffic import TRAFFIC_V1
from agent.report.memory import MemorySink
from tests.agent.bundles import bundle_bytes, manifest_for, tampered, with_fields
from tests.agent.flood_bundle import FloodKit, flood_kit

_LOCAL = b"PK\x03\x04"
_CENTRAL = b"PK\x01\x02"


def _patch_headers(bundle: bytes, *, flags: int = 0, method: int | None = None) -> bytes:
    """The same zip with every member's flag bits OR-ed and, if given, its method replaced."""
    data = bytearray(bundle)
    for signature, flag_at, method_at in ((_LOCAL, 6, 8), (_CENTRAL, 8, 10)):
        at = data.find(signature)
        while at >= 0:
            old = struct.unpack_from("<H", data, at + flag_at)[0]
            struct.pack_into("<H", data, at + flag_at, old | flags)
            if method is not None:
                struct.pack_into("<H", data, at + method_at, method)
            at = data.find(signature, at + 4)
    return bytes(data)


def _plain_zip() -> bytes:
    """A zip with the three bundle member names (content irrelevant: reading must fail first)."""
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name in ("manifest.json", "model.tflite", "manifest.sig"):
            archive.writestr(name, b"x" * 64)
    return out.getvalue()


@pytest.mark.parametrize(
    ("changes", "reason"),
    [({"flags": 0x1}, "encrypted"), ({"method": 99}, "compression method")],
    ids=["encrypted-member", "unknown-compression"],
)
def test_crafted_zip_members_are_a_bundle_error(changes: dict[str, int], reason: str) -> None:
    crafted = _patch_headers(_plain_zip(), **changes)
    with pytest.raises(BundleError, match=reason) as info:
        read_bundle(crafted)
    assert str(info.value).startswith("bundle file:")


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> FloodKit:
    return flood_kit(tmp_path_factory.mktemp("flood"))


def _config(kit: FloodKit, state: Path) -> Any:
    return parse_config(
        {
            "agent": {
                "device_id": "gw-test",
                "state_dir": str(state),
                "trusted_keys": [str(kit.public_key)],
                "stats_interval": 0.2,
            },
            "mqtt": {"enabled": False},
            "sources": [
                {
                    "name": "lan",
                    "kind": "pcap",
                    "path": str(kit.capture),
                    "realtime": True,
                    "loop": True,
                }
            ],
            "models": [{"name": "cnn", "bundle": str(kit.bundle), "source": "lan"}],
        }
    )


def _v2(kit: FloodKit) -> bytes:
    manifest = manifest_for(
        kit.model, TRAFFIC_V1, bundle_id="flood-v2", signer=kit.signer, version=1
    )  # type: ignore[arg-type]
    return bundle_bytes(manifest, kit.model, kit.signer)  # type: ignore[arg-type]


def _run_updates(app: App, sink: MemorySink, updates: list[bytes], results: int) -> list[Any]:
    """Start ``app``, hand it ``updates`` in order, wait for ``results`` results and the swap."""
    thread = threading.Thread(target=app.run, name="agent-under-test")
    thread.start()
    try:
        for data in updates:
            app.on_model_set(data)
        deadline = time.monotonic() + 30
        slot = app.pipeline.slot_list()[0]
        while time.monotonic() < deadline and (
            len(_results(sink)) < results or slot.bundle_id != "flood-v2"
        ):
            time.sleep(0.1)
        alive = {t.name: t.is_alive() for t in threading.enumerate()}
        assert alive.get("model-update"), "the model-update thread died"
    finally:
        app.stop.set()
        thread.join(20)
    return _results(sink)


def _results(sink: MemorySink) -> list[Any]:
    return [m["last_update"] for m in list(sink.models) if "last_update" in m]


def test_update_thread_survives_a_crafted_bundle_and_a_state_dir_it_cannot_write(
    kit: FloodKit, tmp_path: Path
) -> None:
    crafted = _patch_headers(_v2(kit), flags=0x1)  # "encrypted": zipfile raises RuntimeError
    (tmp_path / "models").write_text("not a directory")  # persisting the bundle fails
    sink = MemorySink()
    app = App(_config(kit, tmp_path), sinks=[sink])
    results = _run_updates(app, sink, [crafted, _v2(kit)], 2)
    assert [r["result"] for r in results] == ["refused", "activated"]
    assert "encrypted" in results[0]["reason"]
    assert "not saved" in results[1]["reason"]
    assert app.pipeline.slot_list()[0].bundle_id == "flood-v2"  # verified, so it runs anyway
    assert app.update_failures == 0  # both were expected failures, handled on purpose


def test_a_bundle_already_active_is_not_swapped_in_again(kit: FloodKit, tmp_path: Path) -> None:
    sink = MemorySink()
    app = App(_config(kit, tmp_path), sinks=[sink])
    good = _v2(kit)
    thread = threading.Thread(target=app.run, name="agent-under-test")
    thread.start()
    try:
        app.on_model_set(good)
        slot = app.pipeline.slot_list()[0]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and slot.bundle_id != "flood-v2":
            time.sleep(0.1)
        assert slot.bundle_id == "flood-v2"
        active = slot.bundle
        app.on_model_set(good)  # a retained model/set, delivered again on reconnect
        app.on_model_set(tampered(good))  # updates run in order: its result marks the end
        while time.monotonic() < deadline and len(_results(sink)) < 2:
            time.sleep(0.1)
    finally:
        app.stop.set()
        thread.join(20)
    assert [r["result"] for r in _results(sink)] == ["activated", "refused"]
    assert slot.bundle is active  # not reloaded, no detection ended by a needless swap


def test_an_unreadable_saved_bundle_falls_back_to_the_configured_one(
    kit: FloodKit, tmp_path: Path
) -> None:
    saved = tmp_path / "models" / "cnn.bundle"
    saved.parent.mkdir()
    saved.write_bytes(_patch_headers(_v2(kit), method=99))
    app = App(_config(kit, tmp_path), sinks=[MemorySink()])
    try:
        assert app.pipeline.slot_list()[0].bundle_id == "flood-int8-test"
        assert app.update_failures == 0  # refused as a BundleError, not an unexpected failure
    finally:
        app.shutdown()


def test_golden_outputs_of_another_shape_are_a_bundle_error(kit: FloodKit) -> None:
    manifest = manifest_for(kit.model, TRAFFIC_V1, signer=kit.signer)  # type: ignore[arg-type]
    golden = manifest.golden
    wrong = Golden(golden.inputs, np.zeros((len(golden.inputs), 7), np.float32), golden.atol)
    data = bundle_bytes(with_fields(manifest, golden=wrong), kit.model, kit.signer)  # type: ignore[arg-type]
    with pytest.raises(BundleError, match="golden vectors"):
        load_bundle(data, [kit.public_key.read_bytes()])


def test_a_huge_bundle_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    huge = tmp_path / "huge.bundle"
    with huge.open("wb") as fh:
        fh.truncate(MAX_BUNDLE_BYTES + 1)  # sparse: no disk or memory spent
    with pytest.raises(BundleError, match="larger than"):
        read_bundle(huge)


def test_queued_model_updates_are_bounded_by_bytes(kit: FloodKit, tmp_path: Path) -> None:
    app = App(_config(kit, tmp_path), sinks=[MemorySink()])
    try:
        push = bytes(DEFAULT_MAX_BUNDLE_BYTES // 2 - 1)  # two fit the queue, the oldest go
        for _ in range(5):
            app.on_model_set(push)
        assert app.stats()["queue_depth"]["model_updates"] == 2
    finally:
        app.shutdown()


def test_a_deeply_nested_unsigned_manifest_is_refused_in_one_line(tmp_path: Path) -> None:
    import io
    import zipfile

    from tests.agent.bundles import new_key

    _, public = new_key(tmp_path)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("manifest.json", b"[" * 200_000)  # json.loads: RecursionError
        archive.writestr("model.tflite", b"TFL3")
        archive.writestr("manifest.sig", bytes(64))
    with pytest.raises(BundleError, match="untrusted key unknown"):
        load_bundle(out.getvalue(), [public.read_bytes()])


@pytest.mark.parametrize(
    "claimed",
    ["x" * 5000 + "\n2026-12-07 12:00:00,000 INFO forged\x1b]0;t\x07", "ABCDEF0123456789"],
)
def test_an_unsigned_manifest_claiming_a_key_id_that_is_not_one_is_not_repeated(
    tmp_path: Path, claimed: str
) -> None:
    # whoever pushed the bundle wrote key_id; the refusal reaches the log and the model topic
    import io
    import json
    import zipfile

    from tests.agent.bundles import new_key

    _, public = new_key(tmp_path)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("manifest.json", json.dumps({"key_id": claimed}))
        archive.writestr("model.tflite", b"TFL3")
        archive.writestr("manifest.sig", bytes(64))
    with pytest.raises(BundleError) as refused:
        load_bundle(out.getvalue(), [public.read_bytes()])
    assert str(refused.value) == "bundle signature: signed by untrusted key unknown (not a key id)"


def test_a_broken_configured_bundle_with_a_good_saved_one_resumes_the_saved(
    kit: FloodKit, tmp_path: Path
) -> None:
    saved = tmp_path / "models" / "cnn.bundle"
    saved.parent.mkdir()
    saved.write_bytes(_v2(kit))
    broken = tmp_path / "broken.bundle"
    broken.write_bytes(tampered(kit.bundle.read_bytes()))
    config = _config(kit, tmp_path)
    config = replace(config, models=(replace(config.models[0], bundle=str(broken)),))
    app = App(config, sinks=[MemorySink()])
    try:
        assert app.pipeline.slot_list()[0].bundle_id == "flood-v2"
    finally:
        app.shutdown()
