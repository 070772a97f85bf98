"""A long-lived ClientApp process for one SuperNode (Flower's ``--isolation process`` mode).

Flower runs a ClientApp either in a fresh subprocess per message (``--isolation subprocess``,
the default) or in processes started outside the SuperNode (``--isolation process``), which
take the SuperNode's tasks from its Runtime API. A masking round spans four or five messages
and its client half holds live secrets (X25519 private keys, the self-mask seed, the shares
it keeps for its neighbours) that must not leave memory: serialising them into the
SuperNode's context store between messages, as a per-message process would require, would
write them where the state machine's design says they never go. So each hospital runs this
worker beside its SuperNode: one process for the node's lifetime that takes each task from
the Runtime API, hands the message to the ClientApp *in this process* and pushes the reply.
The node's trainer (and its privacy accountant) and the round's :class:`MaskingClient` live
here between messages, and die with the process: a killed node is a dropout.

This reuses Flower's own task plumbing (``flwr.supernode.runtime.run_clientapp``): task
acquisition, message pull and push and the task output are exactly what ``flwr-clientapp``
does; only the process lives on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

#: Seconds between two polls of the SuperNode's Runtime API for a new task.
POLL_SECONDS = 0.2

log = logging.getLogger("secagg.flower.worker")


def serve(
    runtime_api_address: str,
    app: Callable[..., object],
    *,
    insecure: bool = True,
    root_certificates: bytes | None = None,
    poll_seconds: float = POLL_SECONDS,
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Take the SuperNode's ClientApp tasks one at a time and run ``app`` on each, forever.

    ``app`` is a :class:`flwr.clientapp.ClientApp` (called as ``app(message, context)``).
    """
    from flwr.app import Message
    from flwr.app.error import Error
    from flwr.common.constant import ErrorCode, SubStatus
    from flwr.proto.runtime_pb2 import AcquireTaskRequest
    from flwr.supercore.constant import TaskType
    from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
    from flwr.supercore.interceptors import (
        RuntimeTokenHttpInterceptor,
        RuntimeVersionHttpInterceptor,
    )
    from flwr.supercore.retry import make_simple_http_retry_invoker
    from flwr.supercore.runtime import RuntimeHttpClient
    from flwr.supernode.runtime.run_clientapp import (
        pull_task_input,
        push_message,
        push_task_output,
    )

    def connect(*interceptors: Any) -> RuntimeHttpClient:
        return RuntimeHttpClient.from_server_address(
            server_address=runtime_api_address,
            insecure=insecure,
            root_certificates=root_certificates,
            interceptors=[RuntimeVersionHttpInterceptor(component_name="SuperExec"), *interceptors],
            retry_invoker=make_simple_http_retry_invoker(),
        )

    acquirer = connect()
    while not should_stop():
        response = acquirer.AcquireTask(
            AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP])
        )
        if not (response.HasField("task") and response.token):
            time.sleep(poll_seconds)
            continue
        client = connect(RuntimeTokenHttpInterceptor(response.token))
        heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(client))
        heartbeat.start()
        context = None
        reply = None
        message = None
        status, details = SubStatus.FAILED, "ClientApp task failed"
        try:
            message, context, _run, _fab = pull_task_input(client)
            reply = app(message=message, context=context)
            status, details = SubStatus.COMPLETED, ""
        except Exception as exc:  # the node keeps serving; the server sees an error reply
            log.exception("the ClientApp raised")
            details = f"{type(exc).__name__}: {exc}"
            if message is not None:
                reply = Message(
                    Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=details),
                    reply_to=message,
                )
        finally:
            try:
                if reply is not None and context is not None:
                    push_message(client, reply, context)  # type: ignore[arg-type]
            finally:
                push_task_output(client, context, status, details)
                heartbeat.stop()
                client.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m secagg.flower.worker --runtime-api-address HOST:PORT``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m secagg.flower.worker",
        description="Serve a SuperNode's ClientApp tasks (flower-supernode --isolation process) "
        "with the secagg ClientApp, in this one long-lived process.",
    )
    parser.add_argument("--runtime-api-address", default="127.0.0.1:9094")
    parser.add_argument(
        "--root-certificates",
        help="CA certificate (PEM) of the SuperNode's Runtime API when it serves TLS; "
        "without it the connection is plain HTTP (the API should then listen on 127.0.0.1)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    import torch

    torch.set_num_threads(1)
    from secagg.flower.client_app import app

    certificates = None
    if args.root_certificates:
        from pathlib import Path

        certificates = Path(args.root_certificates).read_bytes()
    serve(
        args.runtime_api_address,
        app,
        insecure=certificates is None,
        root_certificates=certificates,
    )
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
