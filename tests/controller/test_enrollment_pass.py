"""The Enrollment pass against the API emulator: a pass cut off between its two writes."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest

from trustwire import names
from trustwire.controller.reconciler import Controller
from trustwire.demo.emulator import running_emulator
from trustwire.k8s.client import ApiConfig, Client
from trustwire.k8s.errors import ApiError
from trustwire.k8s.resources import ENROLLMENTS, IDENTITIES, SECRETS, decode_data

ENROLLMENT = {"apiVersion": "trustwire.io/v1alpha1", "kind": "Enrollment",
              "metadata": {"name": "sap", "namespace": "erp"},
              "spec": {"identity": "connector", "subject": {"commonName": "sap"}}}


async def test_a_pass_cut_off_after_the_status_issues_a_token_nobody_holds_again(
        identity_body: Callable[..., dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_emulator() as emu, Client(ApiConfig(server=emu.url)) as client:
        controller = Controller(client, public_url="https://enroll.example.com")
        connector = identity_body("connector", "erp", enrollment={"enabled": True})
        await client.create(IDENTITIES, "erp", connector)
        controller.observe_identity(connector, deleted=False)
        await client.create(ENROLLMENTS, "erp", ENROLLMENT)
        create = client.create

        async def cut_off(resource: Any, namespace: str | None, body: Any) -> Any:
            if resource is SECRETS:
                raise ApiError(503, "ServiceUnavailable", "cut off", verb="post", path=resource.path(namespace))
            return await create(resource, namespace, body)

        monkeypatch.setattr(client, "create", cut_off)
        with pytest.raises(ApiError):
            await controller.reconcile_enrollment(("erp", "sap"))
        cut = await client.get(ENROLLMENTS, "erp", "sap")
        assert cut is not None and cut["status"]["phase"] == "TokenIssued"
        assert await client.get(SECRETS, "erp", names.enrollment_token_secret("sap")) is None

        monkeypatch.setattr(client, "create", create)
        await controller.reconcile_enrollment(("erp", "sap"))
        body = await client.get(ENROLLMENTS, "erp", "sap")
        data = decode_data(SECRETS, await client.get(SECRETS, "erp", names.enrollment_token_secret("sap")))
        assert body is not None and body["status"]["token"]["sha256"] == hashlib.sha256(data["token"]).hexdigest()
        assert body["status"]["token"] != cut["status"]["token"]
        assert data["url"] == b"https://enroll.example.com/v1/info"

