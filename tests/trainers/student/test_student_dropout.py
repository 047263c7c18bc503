"""The student's dropout (trainers/student/dropout.py) is nn.Dropout's keep-and-rescale: a fraction p of
the entries zeroed, the rest scaled by 1/(1-p), gradients through the same mask, identity in eval."""
import torch

from trainers.student.dropout import Dropout


def test_drops_a_fraction_p_and_rescales_the_rest():
    torch.manual_seed(0)
    x = torch.ones(400, 128, requires_grad=True)
    d = Dropout(0.3).train()
    y = d(x)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 0.3) < 0.01
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.7))
    assert abs(y.mean().item() - 1.0) < 0.02  # expectation kept
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient is the same mask and scale


def test_identity_in_eval_and_at_zero():
    x = torch.randn(10, 4)
    assert torch.equal(Dropout(0.5).eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert isinstance(Dropout(0.2), torch.nn.Dropout) and not list(Dropout(0.2).parameters())
