"""The session for query backends (FalkorDB): the proxy is the database here.

Every request is answered by the proxy: HELLO and LOGON (with ``Authenticator``), transactions,
and each RUN, either by a local handler (``Session.run_local``) or on the backend. Results are
fetched whole from the backend (FalkorDB returns them whole anyway) and then paged out by PULL
``n``; within an explicit transaction each RUN gets a ``qid`` (0, 1, 2, ...) and stays
pull-able until exhausted.

FalkorDB has no multi-statement transactions: statements inside BEGIN..COMMIT run when they
arrive. COMMIT therefore always succeeds for them, and ROLLBACK after a write fails and says
the writes were already applied rather than pretending to undo them. Stream clauses that change
streams wait for COMMIT, as in front of any backend.

pymgclient opens transactions by sending the query texts ``BEGIN``/``COMMIT``/``ROLLBACK``
as auto-commit RUNs; those are mapped to the same transaction bookkeeping.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from bolt.connection import Received, ServerConnection
from bolt.errors import ClientError
from bolt.messages import Begin, Hello, Logon, Run, Tag
from bolt.status import ROLLBACK_FAILED, TRANSACTION_START_FAILED
from bolt.versions import Version, has_logon
from proxy import SERVER_AGENT
from proxy.backends.base import QueryBackend, QueryResult
from proxy.metrics import PROXY
from proxy.session.auth import Authenticator
from proxy.session.core import Session, SessionEnv, Transaction, Waiting

_TX_TEXT = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK)(?:\s+TRANSACTION)?\s*;?\s*$", re.IGNORECASE)
_WRITES = frozenset(("w", "rw", "s"))
_V4_3 = Version(4, 3)
_V5_0 = Version(5, 0)
_bookmarks = itertools.count(1)


def _bookmark() -> str:
    return f"boltstream:{next(_bookmarks)}"


@dataclass
class LocalEnv(SessionEnv):
    """What every local session shares: set up once by the server."""

    backend: QueryBackend | None = None
    authenticator: Authenticator | None = None


class LocalSession(Session):
    def __init__(
        self,
        transport: asyncio.Transport,
        conn: ServerConnection,
        env: LocalEnv,
        *,
        connection_id: str,
        manifest_used: bool,
        log: logging.LoggerAdapter[logging.Logger],
    ) -> None:
        super().__init__(transport, conn, env, connection_id=connection_id, log=log)
        assert env.backend is not None and env.authenticator is not None
        self.backend: QueryBackend = env.backend
        self.query_backend = env.backend
        self.authenticator: Authenticator = env.authenticator
        self.manifest_used = manifest_used

    def handle(self, request: Received) -> Waiting:
        tag = request.tag
        if tag == Tag.GOODBYE:
            self.close("client said GOODBYE")
            return None
        if tag == Tag.RUN:
            return self.at_turn(partial(self._run, request))
        if tag == Tag.PULL or tag == Tag.DISCARD:
            return self.at_turn(partial(self._page, request))
        if tag == Tag.HELLO:
            return self.at_turn(partial(self._hello, request))
        if tag == Tag.LOGON:
            return self.at_turn(partial(self._logon, request))
        if tag == Tag.BEGIN:
            return self.at_turn(partial(self._begin, request))
        if tag == Tag.COMMIT:
            return self.at_turn(self._commit)
        if tag == Tag.ROLLBACK:
            return self.at_turn(self._rollback)
        if tag == Tag.RESET:
            return self.at_turn(self._reset)
        if tag == Tag.ROUTE:
            return self.at_turn(partial(self.route, request))
        if tag == Tag.LOGOFF:
            self.user = ""
        return self.at_turn(self._ack)  # LOGOFF, TELEMETRY

    def autocommit_bookmark(self) -> str | None:
        return _bookmark()

    def commit_metadata(self) -> dict[str, Any]:
        return {"bookmark": _bookmark()}

    # -- connection and authentication -----------------------------------------------------

    def _ack(self) -> None:
        self.out.add(self.conn.success({}))

    def _hello(self, request: Received) -> Waiting:
        hello = self.conn.decode(request)
        assert isinstance(hello, Hello)
        extra = hello.extra
        routing = extra.get("routing")
        self.routing = routing if isinstance(routing, dict) else None
        metadata: dict[str, Any] = {
            "server": SERVER_AGENT,
            "connection_id": self.connection_id,
            "hints": {},
        }
        version = self.conn.version
        if _V4_3 <= version < _V5_0:
            patches = extra.get("patch_bolt")
            if isinstance(patches, list) and "utc" in patches:
                self.conn.use_utc_patch()
                metadata["patch_bolt"] = ["utc"]
        if self.manifest_used:
            metadata["protocol_version"] = str(version)
        if not has_logon(version):
            return self._login(extra, metadata)
        self.out.add(self.conn.success(metadata))
        return None

    def _logon(self, request: Received) -> Waiting:
        logon = self.conn.decode(request)
        assert isinstance(logon, Logon)
        return self._login(logon.auth, {})

    async def _login(self, token: dict[str, Any], metadata: dict[str, Any]) -> None:
        """Check ``token`` (off the event loop when it needs a hash), then SUCCESS."""
        address = self.client_address.rpartition(":")[0]
        self.user = await self.authenticator.authenticate(token, address)
        self.out.add(self.conn.success(metadata))

    def _reset(self) -> None:
        self.tx = None
        self.current = None
        self.drop_results()
        self._ack()

    # -- transactions ------------------------------------------------------------------------

    def _begin(self, request: Received) -> None:
        begin = self.conn.decode(request)
        assert isinstance(begin, Begin)
        tx = self.begin_transaction(self.db_of(begin.extra), begin.tx_metadata)
        metadata: dict[str, Any] = {}
        if self.conn.version >= Version(5, 8):
            metadata["db"] = tx.db
        self.out.add(self.conn.success(metadata))

    def _commit(self) -> Waiting:
        self.check_terminated()
        tx, self.tx = self.tx, None
        if tx is not None and tx.deferred:
            return self.commit_here(tx)
        self.out.add(self.conn.success(self.commit_metadata()))
        return None

    def _rollback(self) -> None:
        tx, self.tx = self.tx, None
        self._check_rollback(tx)
        self._ack()

    @staticmethod
    def _check_rollback(tx: Transaction | None) -> None:
        if tx is not None and tx.wrote:
            raise ClientError(
                ROLLBACK_FAILED,
                "Cannot roll back: the backing FalkorDB has no multi-statement "
                "transactions, and the writes of this transaction were already "
                "applied when each statement ran.",
            )

    # -- queries -----------------------------------------------------------------------------

    def _page(self, request: Received) -> Waiting:
        self.check_terminated()
        return self.page(request)

    def _run(self, request: Received) -> Waiting:
        self.check_terminated()
        run = self.conn.decode(request)
        assert isinstance(run, Run)
        started = time.monotonic()
        tx = self.tx
        db = tx.db if tx is not None else self.db_of(run.extra)
        if tx is None or not tx.explicit:
            text_control = _TX_TEXT.match(run.query)
            if text_control is not None:
                word = text_control.group(1).upper()
                if word == "COMMIT" and tx is not None and tx.deferred:
                    self.tx = None
                    return self._text_commit(run, tx, db, started)
                self._text_transaction(word, db)
                self.start_result(run, QueryResult([], [], type="r"), db, started)
                return None
        classified = self.env.router.classify(run.query)
        if classified is not None:
            return self.run_local(run, classified, db, started)
        self.note_query(run, db)
        return self._run_on_backend(run, db, started)

    async def _run_on_backend(self, run: Run, db: str, started: float) -> None:
        PROXY.forwarded.inc()
        result = await self.backend.run(db, run.query, run.parameters)
        if self.tx is not None and result.type in _WRITES:
            self.tx.wrote = True
        self.check_terminated()
        self.start_result(run, result, db, started)

    def _text_transaction(self, word: str, db: str) -> None:
        if word == "BEGIN":
            if self.tx is not None:
                raise ClientError(
                    TRANSACTION_START_FAILED, "A transaction is already open on this connection."
                )
            self.begin_transaction(db, {}, explicit=False)
            return
        tx, self.tx = self.tx, None
        if word == "ROLLBACK":
            self._check_rollback(tx)

    async def _text_commit(self, run: Run, tx: Transaction, db: str, started: float) -> None:
        """pymgclient's ``COMMIT`` text, with stream clauses waiting for it."""
        await self.apply_deferred(tx)
        self.start_result(run, QueryResult([], [], type="r"), db, started)
