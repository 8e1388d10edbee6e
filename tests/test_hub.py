"""Push and pull over real HTTP against a Hub-compatible server on 127.0.0.1.

huggingface_hub reads HF_ENDPOINT and the other HF_* variables when it is imported, so the client
runs in a Python process of its own with them set, exactly as a user's script would (one process
for the module, and one more for offline mode).
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
import hashlib, json, os, sys
import torch
torch.set_num_threads(1)
import ganaug
from ganaug import GanaugError
for line in sys.stdin:  # one request per line: {"token": bool, "ops": [...]}; one JSON answer per line
    request = json.loads(line)
    if request["token"]:
        os.environ["HF_TOKEN"] = os.environ["TEST_HUB_TOKEN"]  # huggingface_hub reads HF_TOKEN per call
    else:
        os.environ.pop("HF_TOKEN", None)
    out = []
    for op in request["ops"]:
        try:
            if op[0] == "push":
                out.append(ganaug.push_to_hub(op[1], op[2], **op[3]))
            else:
                G = ganaug.load_generator(op[1], **op[2])
                out.append(hashlib.sha256(G.generate([0, 1, 1], seed=0).numpy().tobytes()).hexdigest())
        except GanaugError as e:
            out.append("GanaugError: " + str(e))
    print(json.dumps(out), flush=True)
"""


class Client:
    """One Python process with the HF_* variables a user would set, answering push/pull requests:
    importing ganaug once instead of once per call. ``offline`` sets HF_HUB_OFFLINE, which
    huggingface_hub reads only at import, so it needs a process of its own."""

    def __init__(self, server, cache_root, offline=False):
        self.server, self.root = server, cache_root
        env = dict(os.environ, HF_ENDPOINT=server.url, HF_HUB_CACHE=str(cache_root / "hf-cache"),
                   HF_HUB_DISABLE_TELEMETRY="1", OMP_NUM_THREADS="1", HF_HUB_ETAG_TIMEOUT="5",
                   HF_HOME=str(cache_root / "hf-home"), TEST_HUB_TOKEN=VALID_TOKEN)
        env.pop("HF_TOKEN", None)
        env.pop("HF_HUB_OFFLINE", None)
        if offline:
            env["HF_HUB_OFFLINE"] = "1"
        self.stderr = open(cache_root / f"client-{'offline' if offline else 'online'}.err", "w+")
        self.proc = subprocess.Popen([sys.executable, "-c", CLIENT], env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr, text=True)

    def __call__(self, ops, token=True):
        self.proc.stdin.write(json.dumps({"token": token, "ops": ops}, default=str) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.stderr.seek(0)
            raise AssertionError("the client process died:\n" + self.stderr.read()[-3000:])
        assert not self.server.unknown, f"client called routes the test server lacks: {self.server.unknown}"
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.stderr.close()


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    c = Client(server, tmp_path_factory.mktemp("client"))
    yield c
    c.close()


def test_push_pull_round_trip_and_card_metadata(client, server, packages):
    url, pulled = client([("push", packages[2], "org/roundtrip", {}), ("pull", "hf-hub:org/roundtrip", {})])
    assert url.startswith(server.url + "/org/roundtrip/commit/")
    assert pulled == local_digest(packages[2])  # bit-exact after push and pull
    assert any(m.get("library_name") == "ganaug" and "ganaug" in m.get("tags", [])
               for m in server.card_metadata)  # the card's YAML front matter was validated


def test_revision_pinning(client, packages):
    url1, url2 = client([
        ("push", packages[2], "org/pinned", {}),
        ("push", packages[4], "org/pinned", {"revision": "v2", "commit_message": "step 4"})])
    first_commit = url1.rsplit("/", 1)[1]
    main, v2, by_kwarg, by_sha = client([
        ("pull", "hf-hub:org/pinned", {}), ("pull", "hf-hub:org/pinned@v2", {}),
        ("pull", "hf-hub:org/pinned", {"revision": "v2"}),
        ("pull", f"hf-hub:org/pinned@{first_commit}", {})])
    assert main == by_sha == local_digest(packages[2])
    assert v2 == by_kwarg == local_digest(packages[4]) != main
    # a later push to main does not move a pinned commit
    client([("push", packages[4], "org/pinned", {})])
    assert client([("pull", f"hf-hub:org/pinned@{first_commit}", {})]) == [by_sha]


def test_cache_reuse_and_offline_mode(client, server, packages):
    _, first = client([("push", packages[2], "org/cached", {}), ("pull", "hf-hub:org/cached", {})])
    before = len(server.requests)
    offline = Client(server, client.root, offline=True)  # the same cache, HF_HUB_OFFLINE=1
    try:
        again, missing = offline([("pull", "hf-hub:org/cached", {}), ("pull", "hf-hub:org/never-downloaded", {})])
    finally:
        offline.close()
    assert again == first
    assert len(server.requests) == before  # served from the cache without touching the Hub
    assert missing.startswith("GanaugError") and "org/never-downloaded@main" in missing
    assert "not in the local Hugging Face cache" in missing


def test_not_found_unauthorised_and_bad_revision(client, packages):
    client([("push", packages[2], "org/secret", {"private": True})])
    missing, no_token_rev = client([("pull", "hf-hub:org/does-not-exist", {}), ("pull", "hf-hub:org/secret@nope", {})])
    assert "org/does-not-exist@main was not found" in missing
    assert "revision 'nope' does not exist in org/secret" in no_token_rev
    (private,) = client([("pull", "hf-hub:org/secret", {})], token=False)
    assert "org/secret@main was not found, or the repo is private and you are not authorised" in private
    assert "HF_TOKEN" in private
    (ok,) = client([("pull", "hf-hub:org/secret", {})], token=True)
    assert ok == local_digest(packages[2])


def test_pickle_only_repo_is_refused(client, server, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    torch.save({"w": torch.zeros(1)}, folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps({"kind": "ganaug-generator"}))
    code = (f"from huggingface_hub import HfApi; api = HfApi(); api.create_repo('org/pickled');"
            f"api.upload_folder(repo_id='org/pickled', folder_path={str(folder)!r})")
    env = dict(os.environ, HF_ENDPOINT=server.url, HF_TOKEN=VALID_TOKEN, HF_HOME=str(tmp_path / "h"),
               HF_HUB_DISABLE_TELEMETRY="1")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, timeout=120)
    (refused,) = client([("pull", "hf-hub:org/pickled", {})])
    assert "only as pickle files (pytorch_model.bin)" in refused


def test_malformed_hub_source():
    with pytest.raises(ganaug.GanaugError, match="is not 'hf-hub:org/name'"):
        ganaug.load_generator("hf-hub:just-a-name")
    with pytest.raises(ganaug.GanaugError, match="pins revision 'a' but revision='b'"):
        ganaug.load_generator("hf-hub:org/x@a", revision="b")
