"""The fake Crypto Pay API (CryptoBot): in-memory apps and invoices answering ``/api/{method}`` as
CONTRACTS.md ("Crypto Pay API") says, signed ``invoice_paid`` webhooks delivered to a URL of your
choice, fault injection on both, and ``/_sandbox/`` admin endpoints. Served by ``python -m sandbox``
next to the fake Telegram and Remnawave; see ``docs/sandbox.md``.

Modules, from the wire up:

* :mod:`~sandbox.cryptobot.format` — constants (assets, fiats, rates, limits), reply and error
  envelopes, decimal strings, times, the webhook signature; :mod:`~sandbox.cryptobot.params` — reading
  parameters from any client style.
* :mod:`~sandbox.cryptobot.invoices` — ``createInvoice``'s checks, the Invoice object, ``getInvoices``'
  filters, paying and expiring.
* :mod:`~sandbox.cryptobot.webhook` — the update's bytes, the POST, the delivery thread.
* :mod:`~sandbox.cryptobot.guards` (faults), :mod:`~sandbox.cryptobot.calls` (call and delivery logs)
  and :mod:`~sandbox.cryptobot.state` — :class:`CryptoBotState`, the entry point.
* :mod:`~sandbox.cryptobot.admin` and :mod:`~sandbox.cryptobot.app` — HTTP.
"""

from __future__ import annotations

from sandbox.cryptobot.format import DEFAULT_TOKEN, CpReply, sign
from sandbox.cryptobot.guards import Faults
from sandbox.cryptobot.state import CryptoBotState
from sandbox.cryptobot.webhook import WebhookConfig

__all__ = ["DEFAULT_TOKEN", "CpReply", "CryptoBotState", "Faults", "WebhookConfig", "sign"]
