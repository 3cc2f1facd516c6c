"""Signature v2 against the contract's SDK test vectors (kingdee.md §1.1), both implementations."""

from __future__ import annotations

import base64

import pytest

from dingdee_common.kingdee_signing import client_secret, signature_headers
from dingdee_sandbox.kingdee.signing import SignatureError, verify_signature

APP_ID = "204399_72epSbtEQMC92Vwt2d3LRa9LRqSc1tqJ"
SECRET = "fb7d46647ac346dbb5fcd45b65512a45"
PATH = "/k3cloud/Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.{}.common.kdsvc"
VECTORS = [
    (
        "BatchSave",
        "0",
        "NzBlNzhhYjEyYzc0MjJmYTBhNjUyYzliNGFmMGVmMjg2ZTYyNWYzOGQ0MDE4ODc4YWEwZGRhZjRiNjc4YzVjMA==",
        "NWRiMjVhYzhkMmI4MTksd2ViYXBpLDIwNTIsMA==",
        "OWQ2YWVhM2JmOGVlYWEzYjVlZGI0NzM3MjlmYzA4NTkyYjhiMTAwNTgxODk5MmQ5NWIxMzBjZTQxNjk5ZWFiYg==",
    ),
    (
        "ExecuteBillQuery",
        "100",
        "ZTJhY2RiZTYxNmFhZDMxN2MyZmU2ZTMxN2I0ZmFjZGE2ZGVlMTgyNTM4YzdkOTNlYzFlNzhmZGU1M2E4YTRmNg==",
        "NWRiMjVhYzhkMmI4MTksd2ViYXBpLDIwNTIsMTAw",
        "MTc3OGY2ZTRjYzI3ZmNmNmU3NzYxMGYyNzBlMjFmYmQ5YTRmZGEyNWQ5YzZiNzNkMDBiMmY1MGNiMTcwNGJlZQ==",
    ),
]


def _headers(service: str, org: str) -> dict[str, str]:
    return signature_headers(
        PATH.format(service),
        acct_id="5db25ac8d2b819",
        username="webapi",
        app_id=APP_ID,
        app_secret=SECRET,
        lcid=2052,
        org_num=org,
        timestamp="1700000000",
    )


class TestSignatureVectors:
    def test_client_secret_decodes_as_the_sdk(self) -> None:
        assert client_secret(APP_ID) == "31ecfd13effe724e7e78fc17f8f94b66"

    @pytest.mark.parametrize(("service", "org", "api_sig", "appdata", "kd_sig"), VECTORS)
    def test_loader_headers_match_the_vectors(
        self, service: str, org: str, api_sig: str, appdata: str, kd_sig: str
    ) -> None:
        headers = _headers(service, org)
        assert headers["X-Api-ClientID"] == "204399"
        assert headers["X-Api-Signature"] == api_sig
        assert headers["X-Kd-Appdata"] == appdata
        assert headers["X-Kd-Signature"] == kd_sig

    @pytest.mark.parametrize(("service", "org", "api_sig", "appdata", "kd_sig"), VECTORS)
    def test_sandbox_verifies_the_vectors(
        self, service: str, org: str, api_sig: str, appdata: str, kd_sig: str
    ) -> None:
        app = verify_signature(_headers(service, org), PATH.format(service), {APP_ID: SECRET})
        assert (app.acct_id, app.username, app.lcid, app.org_num) == (
            "5db25ac8d2b819",
            "webapi",
            2052,
            org,
        )

    def test_sandbox_rejects_other_path_secret_and_appdata(self) -> None:
        headers = _headers("BatchSave", "0")
        with pytest.raises(SignatureError, match="X-Api-Signature"):
            verify_signature(headers, PATH.format("Save"), {APP_ID: SECRET})
        with pytest.raises(SignatureError, match="X-Kd-Signature"):
            verify_signature(headers, PATH.format("BatchSave"), {APP_ID: "f" * 32})
        forged = {
            **headers,
            "X-Kd-Appdata": base64.b64encode(b"5db25ac8d2b819,admin,2052,0").decode(),
        }
        with pytest.raises(SignatureError, match="X-Kd-Signature"):
            verify_signature(forged, PATH.format("BatchSave"), {APP_ID: SECRET})
