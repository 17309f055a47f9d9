"""Opportunity webhooks: signed (Standard Webhooks), at least once through a Redis stream outbox.

formats.py renders bodies (json, slack, discord, telegram); signing.py signs them; outbox.py is the
Redis side (outbox, consumer groups, dead letters); sender.py delivers; cli.py is ``scanner webhooks``.
"""
