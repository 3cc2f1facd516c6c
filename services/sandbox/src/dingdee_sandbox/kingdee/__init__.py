"""The Kingdee Cloud Galaxy (K3Cloud) WebAPI sandbox: a faithful local HTTP server (contract §8)."""

from dingdee_sandbox.kingdee.app import STATE_KEY, create_app
from dingdee_sandbox.kingdee.state import SandboxConfig, SandboxState

__all__ = ["STATE_KEY", "SandboxConfig", "SandboxState", "create_app"]
