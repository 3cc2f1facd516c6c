"""DingTalk old-host (``oapi.dingtalk.com``) client: tokens, rate limits, listids, get."""
