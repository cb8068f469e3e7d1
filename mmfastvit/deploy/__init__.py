"""Deployment helpers: latency measurement (torch + mmengine only); exporters live beside it."""
from .latency import (cpu_model, machine_info, proc_status_kib, summarize, time_interleaved, write_text_atomic)

__all__ = ['cpu_model', 'machine_info', 'proc_status_kib', 'summarize', 'time_interleaved', 'write_text_atomic']
