"""Push and pull over real HTTP against a Hub-compatible server on 127.0.0.1.

huggingface_hub reads HF_ENDPOINT and the other HF_* variables when it is imported, so each
client runs in a fresh Python process with them set, exactly as a user's script would.
"""

import hashlib
import json
import os
import subprocess
import sys

import pytest
import torch

import ganaug

from .conftest import make_package
from .hub_server import VALID_TOKEN, HubServer


@pytest.fixture(scope="module")
def server():
    srv = HubServer().start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """Two packages of one architecture with different weights (steps 2 and 4)."""
    root = tmp_path_factory.mktemp("hub")
    return {steps: make_package(root, steps=steps, name=f"pkg{steps}", license="mit") for steps in (2, 4)}


def digest(images: torch.Tensor) -> str:
    return hashlib.sha256(images.numpy().tobytes()).hexdigest()


def local_digest(pkg) -> str:
    # The client computes its digest with one thread too: bit-exact needs equal thread counts.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return digest(ganaug.load_generator(pkg).generate([0, 1, 1], seed=0))
    finally:
        torch.set_num_threads(threads)


CLIENT = """
import hashlib, json, sys
import torch
torch.set_num_threads(1)
import ganaug
from ganaug import GanaugError
out = []
for op in json.loads(sys.argv[1]):
    try:
        if op[0] == "push":
            out.append(ganaug.push_to_hub(op[1], op[2], **op[3]))
        else:
            G = ganaug.load_generator(op[1], **op[2])
            out.append(hashlib.sha256(G.generate([0, 1, 1], seed=0).numpy().tobytes()).hexdigest())
    except GanaugError as e:
        out.append("GanaugError: " + str(e))
print(json.dumps(out))
"""


def client(server, tmp_path, ops, token=True, offline=False):
    env = dict(os.environ, HF_ENDPOINT=server.url, HF_HUB_CACHE=str(tmp_path / "hf-cache"),
               HF_HUB_DISABLE_TELEMETRY="1", OMP_NUM_THREADS="1", HF_HUB_ETAG_TIMEOUT="5",
               HF_HOME=str(tmp_path / "hf-home"))
    env.pop("HF_TOKEN", None)
    env.pop("HF_HUB_OFFLINE", None)
    if token:
        env["HF_TOKEN"] = VALID_TOKEN
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    r = subprocess.run([sys.executable, "-c", CLIENT, json.dumps(ops, default=str)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not server.unknown, f"client called routes the test server lacks: {server.unknown}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_push_pull_round_trip_and_card_metadata(server, packages, tmp_path):
    url, pulled = client(server, tmp_path, [("push", packages[2], "org/roundtrip", {}),
                                            ("pull", "hf-hub:org/roundtrip", {})])
    assert url.startswith(server.url + "/org/roundtrip/commit/")
    assert pulled == local_digest(packages[2])  # bit-exact after push and pull
    assert any(m.get("library_name") == "ganaug" and "ganaug" in m.get("tags", [])
               for m in server.card_metadata)  # the card's YAML front matter was validated


def test_revision_pinning(server, packages, tmp_path):
    url1, url2 = client(server, tmp_path, [
        ("push", packages[2], "org/pinned", {}),
        ("push", packages[4], "org/pinned", {"revision": "v2", "commit_message": "step 4"})])
    first_commit = url1.rsplit("/", 1)[1]
    main, v2, by_kwarg, by_sha = client(server, tmp_path, [
        ("pull", "hf-hub:org/pinned", {}), ("pull", "hf-hub:org/pinned@v2", {}),
        ("pull", "hf-hub:org/pinned", {"revision": "v2"}),
        ("pull", f"hf-hub:org/pinned@{first_commit}", {})])
    assert main == by_sha == local_digest(packages[2])
    assert v2 == by_kwarg == local_digest(packages[4]) != main
    # a later push to main does not move a pinned commit
    client(server, tmp_path, [("push", packages[4], "org/pinned", {})])
    assert client(server, tmp_path, [("pull", f"hf-hub:org/pinned@{first_commit}", {})]) == [by_sha]


def test_cache_reuse_and_offline_mode(server, packages, tmp_path):
    (pushed, first) = client(server, tmp_path, [("push", packages[2], "org/cached", {}),
                                                ("pull", "hf-hub:org/cached", {})])
    before = len(server.requests)
    again, missing = client(server, tmp_path, [("pull", "hf-hub:org/cached", {}),
                                               ("pull", "hf-hub:org/never-downloaded", {})], offline=True)
    assert again == first
    assert len(server.requests) == before  # served from the cache without touching the Hub
    assert missing.startswith("GanaugError") and "org/never-downloaded@main" in missing
    assert "not in the local Hugging Face cache" in missing


def test_not_found_unauthorised_and_bad_revision(server, packages, tmp_path):
    client(server, tmp_path, [("push", packages[2], "org/secret", {"private": True})])
    missing, no_token_rev = client(server, tmp_path, [("pull", "hf-hub:org/does-not-exist", {}),
                                                      ("pull", "hf-hub:org/secret@nope", {})])
    assert "org/does-not-exist@main was not found" in missing
    assert "revision 'nope' does not exist in org/secret" in no_token_rev
    (private,) = client(server, tmp_path, [("pull", "hf-hub:org/secret", {})], token=False)
    assert "org/secret@main was not found, or the repo is private and you are not authorised" in private
    assert "HF_TOKEN" in private
    (ok,) = client(server, tmp_path, [("pull", "hf-hub:org/secret", {})], token=True)
    assert ok == local_digest(packages[2])


def test_pickle_only_repo_is_refused(server, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    torch.save({"w": torch.zeros(1)}, folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps({"kind": "ganaug-generator"}))
    code = (f"from huggingface_hub import HfApi; api = HfApi(); api.create_repo('org/pickled');"
            f"api.upload_folder(repo_id='org/pickled', folder_path={str(folder)!r})")
    env = dict(os.environ, HF_ENDPOINT=server.url, HF_TOKEN=VALID_TOKEN, HF_HOME=str(tmp_path / "h"),
               HF_HUB_DISABLE_TELEMETRY="1")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, timeout=120)
    (refused,) = client(server, tmp_path, [("pull", "hf-hub:org/pickled", {})])
    assert "only as pickle files (pytorch_model.bin)" in refused


def test_malformed_hub_source():
    with pytest.raises(ganaug.GanaugError, match="is not 'hf-hub:org/name'"):
        ganaug.load_generator("hf-hub:just-a-name")
    with pytest.raises(ganaug.GanaugError, match="pins revision 'a' but revision='b'"):
        ganaug.load_generator("hf-hub:org/x@a", revision="b")
