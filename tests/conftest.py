"""
Shared pytest setup: put src/ on sys.path so tests can import the flat modules
(e.g. `from attention_math import self_attention`).
"""
import os
import sys

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)
