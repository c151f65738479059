"""The panel's objects: :class:`UserRecord` and :class:`NodeRecord` as the sandbox stores them (times in
epoch ms), and their 3.x wire forms — User, Node, config-profile inbound and Host — with every field
of the panel's 3.3.2 schemas present."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sandbox.remnawave.format import (
    DEFAULT_SQUAD,
    INBOUNDS,
    PROFILE_UUID,
    SUBSCRIPTION_BASE,
    as_uuid,
    digest_hex,
    iso_ms,
    iso_or_none,
)


@dataclass(slots=True)
class UserRecord:
    """A panel user as the sandbox stores it (times in epoch ms); :func:`user_json` is its wire form."""

    id: int
    username: str
    status: str
    expire_ms: int
    created_ms: int
    updated_ms: int
    short_uuid: str = ""
    vless_uuid: str = ""
    trojan_password: str = ""
    ss_password: str = ""
    telegram_id: int | None = None
    email: str | None = None
    description: str | None = None
    tag: str | None = None
    traffic_limit_bytes: int = 0
    traffic_limit_strategy: str = "NO_RESET"
    used_bytes: int = 0
    lifetime_bytes: int = 0
    last_reset_ms: int | None = None
    sub_revoked_ms: int | None = None
    online_ms: int | None = None
    first_connected_ms: int | None = None
    last_node_uuid: str | None = None
    last_threshold: int = 0
    hwid_limit: int | None = None
    external_squad: str | None = None
    squads: list[dict[str, str]] = field(default_factory=lambda: [DEFAULT_SQUAD])

    def new_secrets(self, revision: int, *, passwords_only: bool = False) -> None:
        """Derive the subscription secrets from (id, revision): deterministic, unique per user."""
        digits = digest_hex("user", self.id, revision)
        self.trojan_password, self.ss_password = digits[48:72], digits[72:96]
        if not passwords_only:
            self.short_uuid, self.vless_uuid = digits[:16], as_uuid(digits[16:48])


def user_json(u: UserRecord) -> dict[str, Any]:
    """The 3.x User object: every field of the panel's ExtendedUsersSchema."""
    return {
        "id": u.id,
        "shortUuid": u.short_uuid,
        "username": u.username,
        "status": u.status,
        "trafficLimitBytes": u.traffic_limit_bytes,
        "trafficLimitStrategy": u.traffic_limit_strategy,
        "expireAt": iso_ms(u.expire_ms),
        "telegramId": u.telegram_id,
        "email": u.email,
        "description": u.description,
        "tag": u.tag,
        "hwidDeviceLimit": u.hwid_limit,
        "externalSquadUuid": u.external_squad,
        "trojanPassword": u.trojan_password,
        "vlessUuid": u.vless_uuid,
        "ssPassword": u.ss_password,
        "lastTriggeredThreshold": u.last_threshold,
        "subRevokedAt": iso_or_none(u.sub_revoked_ms),
        "lastTrafficResetAt": iso_or_none(u.last_reset_ms),
        "createdAt": iso_ms(u.created_ms),
        "updatedAt": iso_ms(u.updated_ms),
        "subscriptionUrl": f"{SUBSCRIPTION_BASE}/{u.short_uuid}",
        "activeInternalSquads": list(u.squads),
        "userTraffic": {
            "usedTrafficBytes": u.used_bytes,
            "lifetimeUsedTrafficBytes": u.lifetime_bytes,
            "onlineAt": iso_or_none(u.online_ms),
            "firstConnectedAt": iso_or_none(u.first_connected_ms),
            "lastConnectedNodeUuid": u.last_node_uuid,
        },
    }


@dataclass(slots=True)
class NodeRecord:
    """A panel node; ``state`` is one of :data:`NODE_STATES` and drives the three flags."""

    id: int
    uuid: str
    name: str
    country_code: str
    state: str
    created_ms: int
    changed_ms: int
    traffic_used_bytes: int = 0
    users_online: int = 0
    traffic_limit_bytes: int | None = None
    broken_config: bool = False
    """Serve ``configProfile`` out of contract (``activeInbounds: null``): the ``brokenConfig`` fault."""


_STATE_MESSAGES = {"offline": "connect ECONNREFUSED", "connecting": None, "disabled": None, "online": None}


def node_json(n: NodeRecord, now: int) -> dict[str, Any]:
    """The 3.x Node object: every field of the panel's NodesSchema."""
    online = n.state == "online"
    return {
        "uuid": n.uuid,
        "id": n.id,
        "name": n.name,
        "address": f"node{n.id}.sandbox.invalid",
        "port": 2222,
        "proxyUrl": None,
        "isConnected": online,
        "isDisabled": n.state == "disabled",
        "isConnecting": n.state == "connecting",
        "lastStatusChange": iso_ms(n.changed_ms),
        "lastStatusMessage": _STATE_MESSAGES[n.state],
        "isTrafficTrackingActive": n.traffic_limit_bytes is not None,
        "trafficResetDay": 1 if n.traffic_limit_bytes is not None else None,
        "trafficLimitBytes": n.traffic_limit_bytes,
        "trafficUsedBytes": n.traffic_used_bytes,
        "notifyPercent": None,
        "viewPosition": n.id,
        "countryCode": n.country_code,
        "consumptionMultiplier": 1,
        "nodeConsumptionMultiplier": 1,
        "tags": [],
        "integrationUuids": [],
        "ips": [{"ip": f"10.0.{n.id // 256 % 256}.{n.id % 256}", "status": "INBOUND"}],
        "createdAt": iso_ms(n.created_ms),
        "updatedAt": iso_ms(n.changed_ms),
        "configProfile": {
            "activeConfigProfileUuid": PROFILE_UUID,
            "activeInbounds": None if n.broken_config else [inbound_json(inbound) for inbound in INBOUNDS],
        },
        "providerUuid": None,
        "provider": None,
        "activePluginUuid": None,
        "system": None,
        "versions": {"xray": "25.10.15", "node": "2.3.0"} if online else None,
        "xrayUptime": max(0, (now - n.changed_ms) // 1000) if online else 0,
        "usersOnline": n.users_online if online else 0,
        "note": None,
    }


def inbound_json(inbound: Sequence[Any]) -> dict[str, Any]:
    """A config-profile inbound (``activeInbounds`` entry and ``/api/config-profiles/inbounds``)."""
    inbound_uuid, inbound_tag, kind, network, security, port = inbound
    raw = {"tag": inbound_tag, "port": port, "protocol": kind, "streamSettings": {"network": network}}
    return {
        "uuid": inbound_uuid,
        "profileUuid": PROFILE_UUID,
        "tag": inbound_tag,
        "type": kind,
        "network": network,
        "security": security,
        "port": port,
        "rawInbound": raw,
    }


def host_json(position: int, inbound: Sequence[Any], node_uuids: list[str]) -> dict[str, Any]:
    """A Host for one inbound (``GET /api/hosts``), every field of the 3.3.2 schema."""
    inbound_uuid, inbound_tag, _, _, security, port = inbound
    return {
        "uuid": as_uuid(digest_hex("host", inbound_uuid)),
        "viewPosition": position,
        "remark": f"Sandbox {inbound_tag}",
        "address": "vpn.sandbox.invalid",
        "port": port,
        "path": None,
        "sni": "vpn.sandbox.invalid" if security else None,
        "host": None,
        "alpn": None,
        "fingerprint": "chrome" if security else None,
        "isDisabled": False,
        "securityLayer": "DEFAULT",
        "xhttpExtraParams": None,
        "muxParams": None,
        "sockoptParams": None,
        "finalMask": None,
        "inbound": {"configProfileUuid": PROFILE_UUID, "configProfileInboundUuid": inbound_uuid},
        "serverDescription": None,
        "tags": [],
        "isHidden": False,
        "overrideSniFromAddress": False,
        "keepSniBlank": False,
        "vlessRouteId": None,
        "pinnedPeerCertSha256": None,
        "verifyPeerCertByName": None,
        "shuffleHost": False,
        "mihomoX25519": False,
        "mihomoIpVersion": None,
        "nodes": node_uuids,
        "xrayJsonTemplateUuid": None,
        "excludedInternalSquads": [],
        "excludeFromSubscriptionTypes": [],
        "mapper": {},
    }
