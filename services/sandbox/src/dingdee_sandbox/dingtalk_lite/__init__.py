"""A compact DingTalk old-host sandbox (gettoken, listids, get) with a control API.

Stand-in used by ``make run`` and the end-to-end tests while the full DingTalk sandbox
(``dingdee_sandbox.dingtalk``) is being finished; it follows ``contracts/dingtalk.md`` for every
shape it serves.
"""
