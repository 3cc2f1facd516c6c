"""The loader's settings never show a Kingdee credential in a log line."""

from __future__ import annotations

import orjson

from dingdee_common.settings import masked
from dingdee_loader.settings import KingdeeSettings, LoaderSettings

APP_ID = "204399_72epSbtEQMC92Vwt2d3LRa9LRqSc1tqJ"  # public sample value (contract §1.1)


def test_the_app_id_is_masked_like_the_secret() -> None:
    """Its second part decodes to the signature key (contract §1.1), so it is a secret too."""
    kingdee = KingdeeSettings(
        server_url="http://kingdee/k3cloud",
        acct_id="5db25ac8d2b819",
        username="webapi",
        app_id=APP_ID,
        app_secret="fb7d46647ac346dbb5fcd45b65512a45",
    )
    line = orjson.dumps(masked(LoaderSettings(kingdee=kingdee))).decode()
    assert "72epSbtEQMC92Vwt2d3LRa9LRqSc1tqJ" not in line
    assert "fb7d46647ac346dbb5fcd45b65512a45" not in line
    assert '"app_id":"**********"' in line
    assert kingdee.app_id.get_secret_value() == APP_ID, "the client still signs with it"
