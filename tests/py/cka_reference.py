#!/usr/bin/env python3
"""Independent reference for debiased linear CKA (tests/it/cka.rs compares to 1e-6).

Implements the unbiased HSIC U-statistic of Song et al. (2012) directly with numpy (not the
Gram-centering route the Rust code and AWM use), on fixed matrices defined by formulas that
tests/it/cka.rs reproduces exactly. Rows are samples. Prints one JSON object.
"""
import json

import numpy as np


def matrices(n, p, q):
    i = np.arange(n, dtype=np.float64)[:, None]
    jp = np.arange(p, dtype=np.float64)[None, :]
    jq = np.arange(q, dtype=np.float64)[None, :]
    x = np.sin(0.5 * i + 0.9 * jp + 0.013 * i * jp)
    y = np.cos(0.3 * i - 0.7 * jq + 0.021 * i * jq) + 0.5 * x[:, np.arange(q) % p]
    return x, y


def hsic_u(k, l):
    n = k.shape[0]
    kt = k - np.diag(np.diag(k))
    lt = l - np.diag(np.diag(l))
    one = np.ones(n)
    term1 = np.trace(kt @ lt)
    term2 = (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
    term3 = 2.0 / (n - 2) * (one @ kt @ lt @ one)
    return (term1 + term2 - term3) / (n * (n - 3))


def cka_u(x, y):
    k, l = x @ x.T, y @ y.T
    return hsic_u(k, l) / np.sqrt(hsic_u(k, k) * hsic_u(l, l))


def linear_cka(x, y):
    xc, yc = x - x.mean(0), y - y.mean(0)
    return np.linalg.norm(xc.T @ yc) ** 2 / (
        np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc)
    )


cases = [(10, 4, 6), (32, 16, 8), (64, 5, 40)]
out = []
for n, p, q in cases:
    x, y = matrices(n, p, q)
    out.append(
        {"n": n, "p": p, "q": q, "unbiased_cka": float(cka_u(x, y)), "linear_cka": float(linear_cka(x, y))}
    )
print(json.dumps(out))
