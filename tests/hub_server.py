"""A small Hugging Face Hub-compatible HTTP server for tests (models only, in memory).

It implements the endpoints huggingface_hub calls to create repos and branches, upload
(preupload + NDJSON commit, files sent inline) and download (repo info, tree listing, HEAD/GET
on resolve URLs), with private repos that need a bearer token. Unknown requests get a 404 and
are recorded in ``server.unknown`` so a failing test shows what the client asked for.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

VALID_TOKEN = "hf_test_token"


class Repo:
    def __init__(self, private: bool):
        self.private = private
        self.commits: dict[str, dict[str, bytes]] = {}
        self.branches: dict[str, str] = {}
        self._commit({}, None)
        self.branches["main"] = self.last

    def _commit(self, files: dict[str, bytes], parent: str | None) -> str:
        sha = hashlib.sha1(json.dumps([parent, sorted((k, hashlib.sha1(v).hexdigest()) for k, v in files.items()),
                                       len(self.commits)]).encode()).hexdigest()
        self.commits[sha] = files
        self.last = sha
        return sha

    def resolve(self, rev: str) -> str | None:
        if rev in self.branches:
            return self.branches[rev]
        return rev if rev in self.commits else None


class HubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.repos: dict[str, Repo] = {}
        self.unknown: list[str] = []
        self.requests: list[str] = []
        self.card_metadata: list[dict] = []  # front matter of every card validated
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> "HubServer":
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: HubServer

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    # -- helpers -------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes | dict | list = b"", headers: dict | None = None,
              error_code: str | None = None) -> None:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if error_code:
            self.send_header("X-Error-Code", error_code)
            self.send_header("X-Error-Message", error_code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _authorised(self) -> bool:
        return self.headers.get("Authorization", "") == f"Bearer {VALID_TOKEN}"

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _repo(self, repo_id: str) -> Repo | None:
        """The repo if it exists and the caller may see it; otherwise answers 401/404 and None."""
        repo = self.server.repos.get(repo_id)
        if repo is None or (repo.private and not self._authorised()):
            self._send(401 if repo is not None or not self._authorised() else 404,
                       {"error": "Repository not found"}, error_code="RepoNotFound")
            return None
        return repo

    def _unknown(self) -> None:
        self.server.unknown.append(f"{self.command} {self.path}")
        self._send(404, {"error": f"unknown route {self.command} {self.path}"})

    # -- routing -------------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self._route()

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def _route(self) -> None:
        path = urlparse(self.path).path
        parts = [unquote(p) for p in path.strip("/").split("/")]
        self.server.requests.append(f"{self.command} {path}")
        with self.server.lock:
            if self.command == "POST" and parts[:3] == ["api", "repos", "create"]:
                return self._create_repo()
            if self.command == "POST" and parts[:2] == ["api", "validate-yaml"]:
                return self._validate_yaml()
            if parts[:2] == ["api", "models"] and len(parts) >= 4:
                repo_id, rest = f"{parts[2]}/{parts[3]}", parts[4:]
                if self.command == "GET" and not rest:
                    return self._info(repo_id, "main")
                if self.command == "GET" and rest[:1] == ["revision"] and len(rest) == 2:
                    return self._info(repo_id, rest[1])
                if self.command == "GET" and rest[:1] == ["tree"] and len(rest) >= 2:
                    return self._tree(repo_id, rest[1])
                if self.command == "POST" and rest[:1] == ["preupload"]:
                    return self._preupload(repo_id)
                if self.command == "POST" and rest[:1] == ["commit"] and len(rest) == 2:
                    return self._commit(repo_id, rest[1])
                if self.command == "POST" and rest[:1] == ["branch"] and len(rest) == 2:
                    return self._branch(repo_id, rest[1])
            if len(parts) >= 5 and parts[2] == "resolve" and self.command in ("GET", "HEAD"):
                return self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
            return self._unknown()

    # -- endpoints -----------------------------------------------------------------------------
    def _create_repo(self) -> None:
        if not self._authorised():
            return self._send(401, {"error": "Invalid credentials"})
        payload = json.loads(self._body() or b"{}")
        repo_id = f"{payload.get('organization') or 'user'}/{payload['name']}"
        if repo_id in self.server.repos:
            return self._send(409, {"error": "You already created this model repo",
                                    "url": f"{self.server.url}/{repo_id}"})
        private = payload.get("private") or payload.get("visibility") == "private"
        self.server.repos[repo_id] = Repo(bool(private))
        self._send(200, {"url": f"{self.server.url}/{repo_id}", "name": repo_id, "id": repo_id})

    def _validate_yaml(self) -> None:
        """Model-card front matter must be a YAML mapping; records what it saw."""
        import yaml

        content = json.loads(self._body())["content"]
        if not content.startswith("---\n") or "\n---" not in content[4:]:
            return self._send(200, {"warnings": [{"message": "empty or missing yaml metadata"}]})
        try:
            meta = yaml.safe_load(content[4:content.index("\n---", 4)])
        except yaml.YAMLError as e:
            return self._send(400, {"errors": [{"message": f"invalid YAML: {e}"}]})
        if not isinstance(meta, dict):
            return self._send(400, {"errors": [{"message": "metadata must be a mapping"}]})
        self.server.card_metadata.append(meta)
        self._send(200, {"warnings": []})

    def _commit_of(self, repo_id: str, rev: str) -> tuple[Repo, str] | None:
        """(repo, commit) for a visible repo and a known revision; otherwise answers and None."""
        repo = self._repo(repo_id)
        if repo is None:
            return None
        sha = repo.resolve(rev)
        if sha is None:
            self._send(404, {"error": "Invalid rev id"}, error_code="RevisionNotFound")
            return None
        return repo, sha

    def _info(self, repo_id: str, rev: str) -> None:
        found = self._commit_of(repo_id, rev)
        if found is None:
            return
        repo, sha = found
        files = repo.commits[sha]
        self._send(200, {"id": repo_id, "modelId": repo_id, "sha": sha, "private": repo.private,
                         "author": repo_id.split("/")[0], "disabled": False, "gated": False,
                         "lastModified": "2026-11-22T00:00:00.000Z", "tags": [], "downloads": 0,
                         "likes": 0, "siblings": [{"rfilename": p, "size": len(b)} for p, b in sorted(files.items())]})

    def _tree(self, repo_id: str, rev: str) -> None:
        found = self._commit_of(repo_id, rev)
        if found is None:
            return
        repo, sha = found
        self._send(200, [{"type": "file", "path": p, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                         for p, b in sorted(repo.commits[sha].items())])

    def _preupload(self, repo_id: str) -> None:
        if self._repo(repo_id) is None:
            return
        payload = json.loads(self._body())
        self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                   for f in payload.get("files", [])]})

    def _commit(self, repo_id: str, rev: str) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        if not self._authorised():
            return self._send(401, {"error": "Invalid credentials"})
        base = repo.resolve(rev)
        if base is None or rev not in repo.branches:
            return self._send(404, {"error": "Invalid rev id"}, error_code="RevisionNotFound")
        files = dict(repo.commits[base])
        for line in self._body().decode().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key != "header":
                return self._send(400, {"error": f"unsupported commit operation {key}"})
        sha = repo._commit(files, base)
        repo.branches[rev] = sha
        self._send(200, {"commitUrl": f"{self.server.url}/{repo_id}/commit/{sha}", "commitOid": sha,
                         "success": True, "pullRequestUrl": None})

    def _branch(self, repo_id: str, branch: str) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        if branch in repo.branches:
            return self._send(409, {"error": "Reference already exists"})
        payload = json.loads(self._body() or b"{}")
        repo.branches[branch] = repo.resolve(payload.get("startingPoint") or "main")
        self._send(200, {})

    def _resolve(self, repo_id: str, rev: str, path: str) -> None:
        found = self._commit_of(repo_id, rev)
        if found is None:
            return
        repo, sha = found
        data = repo.commits[sha].get(path)
        if data is None:
            return self._send(404, {"error": "Entry not found"}, error_code="EntryNotFound",
                              headers={"X-Repo-Commit": sha})
        self._send(200, data, headers={"X-Repo-Commit": sha, "ETag": f'"{hashlib.sha1(data).hexdigest()}"',
                                       "Content-Type": "application/octet-stream"})
