"""Dynamic int8 quantisation of a trained student, shared by `tgd export --quantize int8`
(TorchScript packages) and evaluate's ``distilled_int8`` row, so the row scores the same model the
package ships (it lives here, below both: trainers never import serving)."""
from __future__ import annotations

import copy

import torch
from torch import nn


def quantize_int8(student: nn.Module) -> nn.Module:
    """A copy of ``student`` with its ``nn.Linear`` layers dynamically quantised (weights int8,
    activations quantised on the fly): smaller weights, the same forward interface."""
    from torch.ao.quantization import quantize_dynamic

    return quantize_dynamic(copy.deepcopy(student).eval(), {nn.Linear}, dtype=torch.qint8)
