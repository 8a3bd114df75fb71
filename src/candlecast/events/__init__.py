"""The 20-channel event tensor aligned to candle timestamps, leakage-safe.

``EventEncoder.encode`` turns an economic calendar, central-bank rate changes and the leader
instruments' candles into a float32 ``(T, 20)`` array, one row per candle. Nothing known after a
candle's close appears in its row. Channel names and indices live in ``channels``; the exact
definitions are in docs/events.md. No database access: jobs read the store and pass frames in.
"""

from candlecast.events.channels import CHANNEL_NAMES, N_CHANNELS
from candlecast.events.encoder import EventEncoder

__all__ = ["CHANNEL_NAMES", "N_CHANNELS", "EventEncoder"]
