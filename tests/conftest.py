"""Shared test settings: one torch thread per worker (tests run with ``-n 2``)."""

import torch

torch.set_num_threads(1)
