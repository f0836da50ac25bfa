#!/usr/bin/env python3
"""Prints torch's values for the fixed case of tests/test_optim_torch.cpp, whose literals they are.

Three steps of torch.optim.SGD (momentum 0.9, Nesterov, weight decay 0.1) and of torch.optim.AdamW
(betas (0.9, 0.95), eps 1e-8, weight decay 0.1) on one f32 parameter of shape [2, 3], the
gradient of step k being grad(k) below, then torch.nn.utils.clip_grad_norm_ of two gradients and
the lr of transformers' get_cosine_schedule_with_warmup. Run: python3 tools/optim_torch_values.py
"""
import math

import torch

INITIAL = [[0.5, -1.25, 2.0], [0.75, -0.5, 1.5]]
LRS = [0.1, 0.05, 0.2]


def grad(k):
    return torch.tensor([[((i * 7 + k * 3) % 9 - 4) * 0.5 for i in range(j * 3, j * 3 + 3)] for j in range(2)])


def run(make):
    p = torch.nn.Parameter(torch.tensor(INITIAL, dtype=torch.float32))
    opt = make([p])
    for k, lr in enumerate(LRS):
        for group in opt.param_groups:
            group["lr"] = lr
        p.grad = grad(k)
        opt.step()
    return p.detach(), opt.state[p]


def show(name, t):
    print(f"{name}: {{{', '.join(repr(float(v)) for v in t.flatten())}}}")


def main():
    p, state = run(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1))
    show("sgd param", p)
    show("sgd momentum_buffer", state["momentum_buffer"])
    p, state = run(lambda ps: torch.optim.AdamW(ps, lr=0.1, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1))
    show("adamw param", p)
    show("adamw exp_avg", state["exp_avg"])
    show("adamw exp_avg_sq", state["exp_avg_sq"])

    a = torch.nn.Parameter(torch.zeros(2, 3))
    b = torch.nn.Parameter(torch.zeros(4))
    a.grad = grad(0)
    b.grad = torch.tensor([1.0, -2.0, 3.0, 0.5])
    total = torch.nn.utils.clip_grad_norm_([a, b], 2.0)
    print(f"clip total: {float(total)!r}")
    show("clip a.grad", a.grad)

    from torch.optim.lr_scheduler import LambdaLR

    def cosine_with_warmup(step, warmup=3, total=10):  # transformers' get_cosine_schedule_with_warmup
        if step < warmup:
            return step / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    sched = LambdaLR(opt, cosine_with_warmup)
    lrs = []
    for _ in range(11):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    print(f"schedule lrs (warmup 3, total 10, base 0.5): {{{', '.join(repr(v) for v in lrs)}}}")


if __name__ == "__main__":
    main()
