import pytest
import torch
from helpers import tiny_stage

import cascade_core as cc
from cascade_core.process.diffusion import q_posterior
from cascade_core.training.losses import min_snr_weight, normal_kl


def batch(x0, t, **extra):
    return {"x0": x0, "t": torch.as_tensor(t), "noise": torch.randn_like(x0), **extra}


def test_simple_loss_shapes_and_grad():
    s = tiny_stage(num_classes=2)
    x0 = torch.rand(4, 3, 8, 8) * 2 - 1
    terms = cc.training_loss(s, batch(x0, [0, 10, 50, 99], label=torch.tensor([0, 1, -1, 1])))
    assert terms["loss"].shape == (4,) and "vb" not in terms
    terms["loss"].mean().backward()
    assert all(p.grad is not None for p in s.parameters() if p.requires_grad)


@pytest.mark.parametrize("param", ["eps", "v", "x0"])
def test_a_network_that_predicts_its_target_gives_zero_loss_and_the_clean_image(param):
    """The x0 estimate the shallow recipe's teacher forcing uses is the data itself when the
    network outputs exactly its target, for every parameterization."""
    s = tiny_stage(parameterization=param)
    x0 = torch.rand(3, 3, 8, 8) * 1.8 - 0.9
    b = batch(x0, [5, 40, 90])
    want = cc.training_loss(s, b)  # any network: only the target is read below
    from cascade_core.process.diffusion import target
    s.forward = lambda *a, **k: target(param, s.schedule, x0, noise=b["noise"], t=b["t"])
    exact = cc.training_loss(s, b)
    assert float(exact["loss"].detach().max()) < 1e-10 and float(want["loss"].detach().min()) > 0
    torch.testing.assert_close(exact["x0"], x0, atol=2e-3, rtol=0)


def test_hybrid_loss_vb_trains_only_the_variance():
    s = tiny_stage(learn_sigma=True)
    x0 = torch.rand(3, 3, 8, 8) * 2 - 1
    out = torch.randn(3, 6, 8, 8, requires_grad=True)
    s.forward = lambda *a, **k: out  # the network's output as a leaf we can inspect
    terms = cc.training_loss(s, batch(x0, [0, 20, 90]))
    terms["vb"].sum().backward()
    assert float(out.grad[:, :3].abs().max()) == 0.0
    assert float(out.grad[:, 3:].abs().max()) > 0.0


def test_vb_is_zero_for_the_true_posterior():
    s = tiny_stage(learn_sigma=True, parameterization="x0")
    sched = s.schedule
    x0 = torch.rand(2, 3, 8, 8) * 2 - 1
    t = torch.tensor([30, 60])
    # x0-prediction equal to the data and variance equal to the posterior's: KL is 0
    _, var, log_var = q_posterior(sched, x0, x0, t=t)
    beta_log = sched.betas.log()[t].float().view(-1, 1, 1, 1)
    # 0 -> the min log-variance
    frac = (log_var.float() - log_var.float()) / (beta_log - log_var.float())
    out = torch.cat([x0, frac.expand_as(x0) * 2 - 1], 1)
    s.forward = lambda *a, **k: out
    terms = cc.training_loss(s, batch(x0, t))
    assert float(terms["vb"].abs().max()) < 1e-5 and float(terms["mse"].max()) == 0.0


def test_normal_kl_of_identical_is_zero():
    m, lv = torch.randn(10), torch.randn(10)
    assert float(normal_kl(m, lv, m, logvar2=lv).abs().max()) < 1e-7


def test_min_snr_weights():
    snr = torch.tensor([0.5, 5.0, 50.0])
    assert torch.allclose(min_snr_weight("eps", snr, 5.0), torch.tensor([1.0, 1.0, 0.1]))
    assert torch.allclose(min_snr_weight("x0", snr, 5.0), torch.tensor([0.5, 5.0, 5.0]))
    assert torch.allclose(min_snr_weight("v", snr, 5.0), torch.tensor([0.5 / 1.5, 5 / 6, 5 / 51]))


def test_min_snr_downweights_low_noise_steps():
    s = tiny_stage()
    x0 = torch.rand(2, 3, 8, 8) * 2 - 1
    t, noise = torch.tensor([0, 99]), torch.randn(2, 3, 8, 8)
    b = {"x0": x0, "t": t, "noise": noise}
    plain = cc.training_loss(s, b)["loss"].detach()
    weighted = cc.training_loss(s, b, min_snr_gamma=5.0)["loss"].detach()
    assert float(weighted[0]) < float(plain[0])
    assert float(weighted[1]) == pytest.approx(float(plain[1]))
