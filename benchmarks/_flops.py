"""Matmul FLOPs of one nn.Linear call, as docs/BENCHMARKS.md ("How FLOPs are counted") counts
them: on R rows (tokens, padding included) of an in x out layer, forward 2·in·out·R; when
gradients are on, + 2·in·out·R for the input's gradient if the input requires grad and
+ 2·in·out·R for the weight's gradient if the weight does."""

import torch


def linear_flops(module: torch.nn.Linear, x: torch.Tensor) -> int:
    passes = 1
    if torch.is_grad_enabled():
        passes += int(x.requires_grad) + int(module.weight.requires_grad)
    return passes * 2 * module.in_features * module.out_features * (x.numel() // x.shape[-1])
