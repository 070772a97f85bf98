"""A whole deployment in one process: the real ServerApp coordinator and the real ClientApp,
joined by a Flower Grid that delivers each message at once instead of over the network.

The coordinator (:class:`~secagg.flower.server_app.Coordinator`) builds Flower messages and
talks to the grid exactly as in a deployment; each message goes to ``client_app.app`` with
its node's context (``node_config``: the node's policy file and keys), whose own state (the
ClientApp's per-run node table) is kept per node, as each SuperNode's worker process keeps it.
``tamper`` may rewrite what the coordinator sends to one node (a lying coordinator).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flower.nodes import write_policy
from flwr.app import Context, Error, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from secagg.config import Config, config_to_toml
from secagg.flower import client_app
from secagg.flower.keys import generate_identities
from secagg.flower.node import HospitalNode
from secagg.flower.server_app import Coordinator, ServerSettings

RUN_ID = 1


class InProcessGrid:
    """A Flower Grid whose SuperNodes are this process's ClientApp, one state per node."""

    def __init__(self, node_configs: dict[int, dict[str, Any]]) -> None:
        self.node_configs = node_configs
        self.states: dict[int, dict[int, HospitalNode]] = {n: {} for n in node_configs}
        self.replies: dict[str, Message] = {}
        #: (node id, message) -> the message that node receives instead
        self.tamper: Callable[[int, Message], Message] | None = None

    def node(self, node_id: int) -> HospitalNode:
        """The node's state for the run (what its worker process holds)."""
        return self.states[node_id][RUN_ID]

    def get_node_ids(self) -> list[int]:
        return list(self.node_configs)

    def push_messages(self, messages: list[Message]) -> list[str]:
        ids = []
        for message in messages:
            message_id = uuid.uuid4().hex
            message.metadata.__dict__["_message_id"] = message_id  # the SuperLink's job
            node_id = message.metadata.dst_node_id
            if self.tamper is not None:
                message = self.tamper(node_id, message)
            self.replies[message_id] = self._deliver(node_id, message)
            ids.append(message_id)
        return ids

    def pull_messages(self, message_ids: list[str]) -> list[Message]:
        return [self.replies.pop(i) for i in message_ids if i in self.replies]

    def _deliver(self, node_id: int, message: Message) -> Message:
        context = Context(
            run_id=RUN_ID,
            node_id=node_id,
            node_config=self.node_configs[node_id],
            state=RecordDict(),
            run_config={},
        )
        own, client_app._NODES = client_app._NODES, self.states[node_id]
        try:
            return client_app.app(message, context)
        except Exception as exc:  # the SuperNode reports a ClientApp that raised
            return Message(Error(code=0, reason=f"{type(exc).__name__}: {exc}"), reply_to=message)
        finally:
            client_app._NODES = own


@contextmanager
def _task_identity() -> Iterator[None]:
    """The ServerApp's identity in the process (Flower sets it for a real ServerApp)."""
    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = RUN_ID, 0, 0
    try:
        yield
    finally:
        TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


class Deployment:
    """n hospitals (node ids 100 + client id), each with its policy file, identity key and
    state folder under ``folder``, and the coordinator's identity directory."""

    def __init__(
        self, folder: Path, clients: int, privacy: dict[str, Any], **sections: Any
    ) -> None:
        self.folder = folder
        self.directory = str(generate_identities(list(range(clients)), folder / "keys"))
        self.policies = {
            c: write_policy(folder / f"hospital{c}", client_id=c, privacy=privacy, **sections)
            for c in range(clients)
        }
        self.grid = InProcessGrid(
            {
                100 + c: {
                    "client-id": c,
                    "policy": str(policy),
                    "identity-key": str(folder / "keys" / str(c) / "identity.key"),
                    "identities": self.directory,
                }
                for c, policy in self.policies.items()
            }
        )

    def node(self, client: int) -> HospitalNode:
        return self.grid.node(100 + client)

    def run(self, config: Config, out: Path) -> Coordinator:
        """Run ``config`` to its end (raising what the coordinator raises)."""
        settings = ServerSettings(
            config_toml=config_to_toml(config),
            output_dir=out,
            phase_timeout=5.0,
            startup_timeout=5.0,
            identities=self.directory,
        )
        with _task_identity():
            coordinator = Coordinator(self.grid, settings)
            coordinator.run()
        return coordinator
