"""claim_node_id: one node id per live process on a host, reused after it exits."""

import subprocess
import sys
from pathlib import Path

import pytest

from transport import claim_node_id


def test_live_claims_get_distinct_slots_and_a_released_slot_is_reused(tmp_path: Path) -> None:
    first = claim_node_id("web-", host="host-a", lock_dir=tmp_path)
    second = claim_node_id("web-", host="host-a", lock_dir=tmp_path)
    assert (first.node_id, second.node_id) == ("web-host-a-0", "web-host-a-1")
    first.release()
    assert not first.held
    third = claim_node_id("web-", host="host-a", lock_dir=tmp_path)
    assert third.node_id == "web-host-a-0"
    other_app = claim_node_id("api-", host="host-a", lock_dir=tmp_path)
    assert other_app.node_id == "api-host-a-0"  # prefixes do not share slots
    for claim in (second, third, other_app):
        claim.release()


def test_host_names_are_made_safe() -> None:
    claim = claim_node_id(host="pod 7/éa:b")
    try:
        assert claim.node_id.startswith("pod-7-a-b-")
    finally:
        claim.release()
    with pytest.raises(ValueError, match="prefix or a host"):
        claim_node_id(host="///")


@pytest.mark.timeout(30)
def test_a_killed_process_frees_its_slot(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from transport import claim_node_id; "
            f"c = claim_node_id('w-', host='h', lock_dir={str(tmp_path)!r}); "
            "print(c.node_id, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "w-h-0"
        taken = claim_node_id("w-", host="h", lock_dir=tmp_path)
        assert taken.node_id == "w-h-1"  # slot 0 is held by the live process
        taken.release()
    finally:
        holder.kill()  # SIGKILL: no cleanup runs in the holder
        holder.wait(10)
    again = claim_node_id("w-", host="h", lock_dir=tmp_path)
    assert again.node_id == "w-h-0"
    again.release()


def test_every_slot_taken_is_an_error(tmp_path: Path) -> None:
    held = [claim_node_id("x-", host="h", lock_dir=tmp_path, max_slots=2) for _ in range(2)]
    with pytest.raises(RuntimeError, match="held by live processes"):
        claim_node_id("x-", host="h", lock_dir=tmp_path, max_slots=2)
    for claim in held:
        claim.release()
