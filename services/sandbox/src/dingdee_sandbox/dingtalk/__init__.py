"""The DingTalk sandbox: a real HTTP server that follows ``contracts/dingtalk.md``.

Old host (``gettoken``, ``topapi/processinstance/listids``, ``topapi/processinstance/get``) with
DingTalk's shapes and error codes (HTTP 200 + ``errcode``; auth and throttling inside ``errcode
88`` with a string ``sub_code``), a clock the tests control, per-(app, API) QPS limits, a monthly
quota, fault knobs, and a ``/_sandbox/`` control and inspection API. Product code for demos,
staging and tests.
"""
