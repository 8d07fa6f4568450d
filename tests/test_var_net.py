"""VAR network: latent shape and sampling, skip dropout, skip_weight; the regression baseline's interface."""

from __future__ import annotations

import pytest
import torch

from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.models.regression_net import RegressionNetConfig
from nerfstudio_splatdiff.models.var_net import VARNetConfig

SMALL = dict(block_out_channels=(32, 32, 64, 64), layers_per_block=1, norm_num_groups=16)


def inputs(B=2, S=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    K = torch.tensor([[30.0, 0, S / 2], [0, 30.0, S / 2], [0, 0, 1]]).expand(B, 3, 3)
    return torch.rand(B, 3, S, S, generator=g), torch.eye(4).expand(B, 4, 4), K, torch.ones(B), 3 * torch.ones(B)


def test_latent_is_4_channels_at_one_eighth_and_sampled_only_in_training():
    torch.manual_seed(0)
    net = VARNetConfig(**SMALL, skip_dropout=0.0).setup()
    x = inputs()
    net.train()
    a, b = net(*x), net(*x)
    assert a["latent_mean"].shape == (2, 4, 4, 4)
    assert not torch.equal(a["latent"], b["latent"])  # reparameterised samples
    net.eval()
    c, d = net(*x), net(*x)
    assert torch.equal(c["latent"], c["latent_mean"]) and torch.equal(c["gaussians"].means, d["gaussians"].means)
    assert c["gaussians"].means.shape == (2, 2 * 32 * 32, 3)


def test_skip_dropout_really_zeros_the_skips():
    torch.manual_seed(0)
    x = inputs()
    net = VARNetConfig(**SMALL, skip_dropout=1.0).setup()
    with torch.no_grad():
        torch.nn.init.normal_(net.skip_proj.weight)  # make the skip path matter
    net.train()
    out = net(*x, sample_latent=False)
    assert torch.equal(out["skip_weight"], torch.zeros(2))
    raw_no_skip = net.decode_raw(out["latent"], None)
    raw_dropped = net.decode_raw(out["latent"], net.encode(x[0])[2], out["skip_weight"])
    assert torch.allclose(raw_no_skip, raw_dropped)
    net.config.skip_dropout = 0.0
    assert torch.equal(net(*x)["skip_weight"], torch.ones(2))


def test_skip_weight_zero_depends_only_on_the_latent():
    torch.manual_seed(0)
    net = VARNetConfig(**SMALL).setup().eval()
    with torch.no_grad():
        torch.nn.init.normal_(net.skip_proj.weight)
    x1, x2 = inputs(seed=1), inputs(seed=2)
    z = torch.randn(2, 4, 4, 4)
    a = net(*x1, skip_weight=0.0, latent=z)["gaussians"].means
    b = net(*x2, skip_weight=0.0, latent=z)["gaussians"].means
    assert torch.equal(a, b)
    a1 = net(*x1, skip_weight=1.0, latent=z)["gaussians"].means
    b1 = net(*x2, skip_weight=1.0, latent=z)["gaussians"].means
    assert not torch.allclose(a1, b1)


def test_decode_is_the_end_of_forward_and_the_head_stays_float32_under_autocast():
    torch.manual_seed(0)
    net = VARNetConfig(**SMALL).setup().eval()
    images, c2w, K, near, far = inputs()
    with torch.no_grad():
        out = net(images, c2w, K, near, far, skip_weight=0.5)
        mean, _, skip = net.encode(images)
        g = net.decode(mean, skip, 0.5, c2w, K, near, far)
        assert torch.equal(g.means, out["gaussians"].means) and torch.equal(g.colors, out["gaussians"].colors)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = net.decode(mean, skip, 0.5, c2w, K, near, far)
    assert h.means.dtype == torch.float32 and h.quats.dtype == torch.float32


def test_image_size_must_fit_the_latent_grid():
    net = VARNetConfig(**SMALL).setup()
    with pytest.raises(SplatdiffError, match="multiple of 8"):
        net(*inputs(S=36))


def test_regression_net_takes_the_same_call():
    net = RegressionNetConfig(**SMALL, attention_levels=()).setup().eval()
    out = net(*inputs(), skip_weight=0.3)
    assert out["gaussians"].means.shape == (2, 2 * 32 * 32, 3)


def test_loads_local_autoencoderkl_weights(tmp_path):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=SMALL["block_out_channels"],
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=16,
    )
    vae.save_pretrained(tmp_path / "vae")
    net = VARNetConfig(**SMALL, pretrained_autoencoder=tmp_path / "vae").setup()
    assert torch.equal(net.encoder.conv_in.weight, vae.encoder.conv_in.weight)
    assert torch.equal(net.decoder.mid_block.resnets[0].conv1.weight, vae.decoder.mid_block.resnets[0].conv1.weight)
    assert net.decoder.conv_out.out_channels == 30  # the splatter output layer is new
    with pytest.raises(SplatdiffError, match="No AutoencoderKL weights at"):
        VARNetConfig(**SMALL, pretrained_autoencoder=tmp_path / "missing").setup()


def test_method_presets_bind_the_viewer_to_localhost():
    from method_configs.splatdiff_methods import (
        splatdiff_regression_small,
        splatdiff_var,
        splatdiff_var_small,
        splatdiff_var_small_input_only,
    )

    for spec in (splatdiff_var, splatdiff_var_small, splatdiff_regression_small, splatdiff_var_small_input_only):
        assert spec.config.viewer.websocket_host == "127.0.0.1"
    assert (
        splatdiff_var.config.pipeline.model.image_size == 128
        and splatdiff_var_small.config.pipeline.model.image_size == 64
    )


def _privileged(images: torch.Tensor, yaw_deg: float = 180.0) -> tuple:
    """A privileged view: random pixels, seen from a camera turned `yaw_deg` around the object (2 units ahead)."""
    import math

    B = images.shape[0]
    a = math.radians(yaw_deg)
    c2w = torch.eye(4).repeat(B, 1, 1)
    c2w[:, :3, :3] = torch.tensor([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])
    c2w[:, :3, 3] = torch.tensor([0.0, 0.0, 2.0]) - c2w[:, :3, 2] * 2.0
    K = torch.tensor([[64.0, 0, 32], [0, 64.0, 32], [0, 0, 1]]).repeat(B, 1, 1)
    return torch.rand_like(images), c2w, K


def test_privileged_view_informs_the_latent_but_never_the_skip_features():
    torch.manual_seed(0)
    net = VARNetConfig(**SMALL, privileged_view=True).setup().eval()
    images = inputs()[0]
    view_a, view_b = _privileged(images), _privileged(images)
    mean_a, logvar_a, skip_a = net.encode(images, view_a)
    mean_b, _, skip_b = net.encode(images, view_b)
    mean_0, logvar_0, skip_0 = net.encode(images)
    assert torch.equal(skip_a, skip_b) and torch.equal(skip_a, skip_0)  # the decoder's skips see the input only
    assert not torch.allclose(mean_a, mean_b)  # the latent carries the privileged view's pixels ...
    turned = net.encode(images, (view_a[0], _privileged(images, 120.0)[1], view_a[2]))[0]
    assert not torch.allclose(mean_a, turned)  # ... and its pose
    assert torch.equal(logvar_a, logvar_0)


def test_a_new_privileged_branch_already_tells_hidden_sides_of_different_colours_apart():
    torch.manual_seed(0)
    net = VARNetConfig(**SMALL, privileged_view=True).setup().eval()
    images = inputs()[0]
    _, c2w, K = _privileged(images)
    red, blue = torch.zeros_like(images), torch.zeros_like(images)
    red[:, 0], blue[:, 2] = 0.9, 0.9
    mean_red = net.encode(images, (red, c2w, K))[0]
    mean_blue = net.encode(images, (blue, c2w, K))[0]
    # Above the posterior noise a trained encoder settles at (std 0.17-0.25 measured on the proving ground), so the
    # decoder can read it; with the zero start we tried first, the difference was 0.
    assert float((mean_red - mean_blue).abs().mean()) > 0.25
    # The scene-wide part alone (what the decoder's global code reads) is apart by more than the posterior noise
    # left after pooling an 8x8 latent (0.25 / 8).
    assert float((mean_red.mean(dim=(2, 3)) - mean_blue.mean(dim=(2, 3))).abs().mean()) > 0.25 / 8 * 4


def test_the_decoder_convolutions_never_see_the_latent_mean_only_its_global_code_does():
    torch.manual_seed(0)
    net = VARNetConfig(**SMALL, global_code=True).setup().eval()
    plain = VARNetConfig(**SMALL).setup().eval()
    z = torch.randn(2, 4, 4, 4)
    shift = torch.randn(2, 4, 1, 1) * 3
    with torch.no_grad():
        for n in (net, plain):  # the head's output layer starts near zero: give it weights that show every change
            torch.nn.init.normal_(n.decoder.conv_out.weight, std=0.1)
        # A new global code is the identity (its last layer is zero): a scene-wide shift changes nothing at all.
        torch.testing.assert_close(net.decode_raw(z + shift, None), net.decode_raw(z, None), atol=1e-4, rtol=1e-4)
        torch.nn.init.normal_(net.global_film.out.weight, std=0.1)
        moved = (net.decode_raw(z + shift, None) - net.decode_raw(z, None)).abs().mean()
    assert float(moved) > 1e-3  # once it has learned, the mean reaches the decoder, through the code only
    with torch.no_grad():  # without a global code the convolutions see the shift directly
        assert float((plain.decode_raw(z + shift, None) - plain.decode_raw(z, None)).abs().mean()) > 1e-3


def test_global_code_noise_moves_only_the_spatial_mean_of_training_latents_by_its_std():
    torch.manual_seed(0)
    quiet = VARNetConfig(**SMALL, global_code=True, skip_dropout=0.0).setup().train()
    noisy = VARNetConfig(**SMALL, global_code=True, global_code_noise=2.0, skip_dropout=0.0).setup().train()
    noisy.load_state_dict(quiet.state_dict())
    x = inputs(B=64)
    torch.manual_seed(1)
    a = quiet(*x)
    torch.manual_seed(1)  # the same posterior noise: what differs is the global code's noise
    b = noisy(*x)
    moved = b["latent"] - a["latent"]
    per_code = moved.mean(dim=(2, 3), keepdim=True)
    assert torch.allclose(moved, per_code.expand_as(moved), atol=1e-5)  # one shift per sample and channel
    assert 1.6 < float(per_code.std()) < 2.4  # of std 2
    assert torch.equal(a["latent_mean"], b["latent_mean"])
    noisy.eval()
    ev = noisy(*x)
    assert torch.equal(ev["latent"], ev["latent_mean"])  # never in eval


def test_global_code_noise_needs_a_global_code():
    with pytest.raises(SplatdiffError, match="global-code-noise"):
        VARNetConfig(**SMALL, global_code_noise=1.0)
    with pytest.raises(SplatdiffError, match="global-code-noise"):
        VARNetConfig(**SMALL, global_code=True, global_code_noise=-1.0)


def test_a_frozen_encoder_keeps_every_latent_while_a_training_step_moves_the_decoder():
    from nerfstudio.data.scene_box import SceneBox

    from nerfstudio_splatdiff.models.reconstructor import ReconstructorModelConfig

    torch.manual_seed(0)
    network = VARNetConfig(**SMALL, privileged_view=True, global_code=True, frozen_encoder=True, skip_dropout=0.0)
    config = ReconstructorModelConfig(network=network, image_size=32, lpips_weight=0.0)
    box = SceneBox(aabb=torch.tensor([[-1.0, -1, -1], [1, 1, 1]]))
    model = config.setup(scene_box=box, num_train_data=0, metadata={}, device="cpu")
    net = model.net
    frozen = {id(p) for m in net.encoder_side() for p in m.parameters()}
    assert net.privileged is not None and any(id(p) in frozen for p in net.privileged.parameters())
    trained = model.get_param_groups()["network"]
    assert trained and not any(id(p) in frozen for p in trained)
    assert len(trained) + len(frozen) == len(list(net.parameters()))  # everything else trains
    images, c2w, K, near, far = inputs()
    privileged = (images.flip(0), c2w, K)
    with torch.no_grad():
        before_latent = net.encode(images, privileged)[0]
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    optimiser = torch.optim.SGD(trained, lr=1.0)
    out = net.train()(images, c2w, K, near, far, privileged=privileged)
    (out["gaussians"].means.square().mean() + out["gaussians"].colors.mean()).backward()
    optimiser.step()
    moved = {n for n, p in net.named_parameters() if not torch.equal(p, before[n])}
    assert moved and all(n.split(".")[0] not in ("encoder", "quant_conv", "privileged") for n in moved)
    assert any(n.startswith("decoder.") for n in moved)
    with torch.no_grad():
        assert torch.equal(net.encode(images, privileged)[0], before_latent)  # a denoiser's latents stay its latents
    free = VARNetConfig(**SMALL, privileged_view=True, global_code=True).setup()
    assert all(p.requires_grad for p in free.parameters())  # off by default: the paper trains everything


def test_privileged_view_is_withheld_at_random_in_training_only():
    torch.manual_seed(0)
    net = VARNetConfig(**SMALL, privileged_view=True, privileged_drop=1.0, skip_dropout=0.0).setup().train()
    x = inputs()
    view = _privileged(x[0])
    out = net(*x, privileged=view, sample_latent=False)
    assert torch.allclose(out["latent_mean"], net.encode(x[0])[0], atol=1e-6)
    net.config.privileged_drop = 0.0
    out = net(*x, privileged=view, sample_latent=False)
    assert not torch.allclose(out["latent_mean"], net.encode(x[0])[0], atol=1e-4)


def test_privileged_view_index_picks_the_view_facing_most_away():
    from nerfstudio_splatdiff.models.privileged import privileged_view_index
    from nerfstudio_splatdiff.splats.cameras import invert_rigid
    from nerfstudio_splatdiff.splats.orbit import orbit_w2c

    c2w = invert_rigid(orbit_w2c(8, radius=2.0))  # views 45 degrees apart around the object; view 4 faces view 0
    assert privileged_view_index(c2w[None]).tolist() == [4]
    assert privileged_view_index(torch.stack([c2w[[0, 1, 2]], c2w[[0, 3, 4]]])).tolist() == [2, 2]


def test_plucker_rays_are_unit_directions_with_moments_orthogonal_to_them():
    from nerfstudio_splatdiff.models.privileged import plucker_rays

    _, c2w, K = _privileged(torch.zeros(2, 3, 8, 8), 90.0)
    rays = plucker_rays(c2w, torch.tensor([[8.0, 0, 4], [0, 8.0, 4], [0, 0, 1]]).repeat(2, 1, 1), 8)
    d, m = rays[:, :3], rays[:, 3:]
    assert torch.allclose(d.norm(dim=1), torch.ones(2, 8, 8), atol=1e-5)
    assert torch.allclose((d * m).sum(1), torch.zeros(2, 8, 8), atol=1e-5)
    # The centre ray runs along the camera's optical axis (its third column), from the camera centre.
    centre = rays[0, :, 4, 4]  # pixel centre 4.5 ~ principal point 4: close to the axis
    assert torch.allclose(centre[:3], c2w[0, :3, 2], atol=0.1)


def test_a_plain_var_refuses_a_privileged_view():
    net = VARNetConfig(**SMALL).setup()
    images = inputs()[0]
    with pytest.raises(SplatdiffError, match="privileged_view"):
        net.encode(images, _privileged(images))


def test_a_widened_output_layer_keeps_every_old_gaussian_and_adds_nearly_transparent_ones():
    from nerfstudio_splatdiff.models.splatter_head import SplatterHeadConfig
    from nerfstudio_splatdiff.runs import with_more_gaussians_per_pixel

    torch.manual_seed(0)
    old = VARNetConfig(**SMALL, head=SplatterHeadConfig(gaussians_per_pixel=2)).setup().eval()
    state = {f"_model.net.{k}": v for k, v in old.state_dict().items()}
    state |= {f"_model.ema.module.{k}": v for k, v in old.state_dict().items()}  # the EMA is widened too
    widened, old_m = with_more_gaussians_per_pixel(state, 4, opacity_bias=-5.0)
    assert old_m == 2 and widened["_model.ema.module.decoder.conv_out.weight"].shape[0] == 4 * 15
    assert torch.equal(widened["_model.net.decoder.conv_out.bias"], widened["_model.ema.module.decoder.conv_out.bias"])
    new = VARNetConfig(**SMALL, head=SplatterHeadConfig(gaussians_per_pixel=4)).setup().eval()
    new.load_state_dict({k.removeprefix("_model.net."): v for k, v in widened.items() if k.startswith("_model.net.")})
    x = inputs()
    with torch.no_grad():
        a, b = old(*x)["gaussians"], new(*x)["gaussians"]
    n = 2 * 32 * 32  # Gaussian index = m * H * W + pixel: the first M * H * W are the old ones
    assert torch.allclose(b.means[:, :n], a.means) and torch.allclose(b.opacities[:, :n], a.opacities)
    expected = torch.sigmoid(torch.tensor(-5.0))  # the new ones start nearly transparent, whatever the input
    assert torch.allclose(b.opacities[:, n:], expected.expand_as(b.opacities[:, n:])) and expected < 0.01
    assert b.means[:, n:].std() > 0  # and not as copies of one Gaussian
    with pytest.raises(SplatdiffError, match="2 Gaussians per pixel already"):
        with_more_gaussians_per_pixel(state, 2, opacity_bias=-5.0)
    with pytest.raises(SplatdiffError, match="no VAR output layer"):
        with_more_gaussians_per_pixel({"_model.net.x": torch.ones(1)}, 4, opacity_bias=-5.0)


def test_a_deepened_var_computes_exactly_what_it_did_and_its_new_blocks_can_learn():
    from nerfstudio_splatdiff.runs import with_more_layers_per_block

    torch.manual_seed(0)
    old = VARNetConfig(**SMALL).setup().eval()
    state = {f"_model.net.{k}": v for k, v in old.state_dict().items()}
    state |= {f"_model.ema.module.{k}": v for k, v in old.state_dict().items()}  # the EMA is deepened too
    deeper, old_layers = with_more_layers_per_block(state, 2)
    assert old_layers == 1
    net_keys = {k.removeprefix("_model.net."): v for k, v in deeper.items() if k.startswith("_model.net.")}
    ema_keys = {k.removeprefix("_model.ema.module."): v for k, v in deeper.items() if k.startswith("_model.ema.")}
    assert net_keys.keys() == ema_keys.keys() and all(torch.equal(net_keys[k], ema_keys[k]) for k in net_keys)
    new = VARNetConfig(**{**SMALL, "layers_per_block": 2}).setup().eval()
    new.load_state_dict(net_keys)  # strict: every parameter of the deeper network is there, nothing else
    x = inputs()
    with torch.no_grad():
        a, b = old(*x)["gaussians"], new(*x)["gaussians"]
    assert torch.allclose(b.means, a.means, atol=1e-5) and torch.allclose(b.opacities, a.opacities, atol=1e-6)
    # The new blocks are not dead: their zeroed last convolution gets a gradient at once.
    new.train()
    new(*x)["gaussians"].means.square().mean().backward()
    added = new.decoder.up_blocks[0].resnets[2].conv2.weight
    assert torch.count_nonzero(added) == 0 and added.grad.abs().sum() > 0
    with pytest.raises(SplatdiffError, match="1 layers per block already"):
        with_more_layers_per_block(state, 1)
    with pytest.raises(SplatdiffError, match="no VAR encoder/decoder blocks"):
        with_more_layers_per_block({"_model.net.x": torch.ones(1)}, 2)


def test_privileged_shift_is_the_spatial_mean_of_what_the_privileged_view_adds_and_zero_without_one():
    torch.manual_seed(0)
    net = VARNetConfig(**SMALL, privileged_view=True, global_code=True, skip_dropout=0.0, privileged_drop=0.0)
    net = net.setup().eval()
    x = inputs()
    view = _privileged(x[0])
    with torch.no_grad():
        out = net(*x, privileged=view)
        expected = (net.encode(x[0], view)[0] - net.encode(x[0])[0]).mean(dim=(2, 3))
        plain = net(*x)
    assert float(expected.abs().max()) > 0.1  # GLOBAL_GAIN: a new branch already shifts the code
    torch.testing.assert_close(out["privileged_shift"], expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(plain["privileged_shift"], torch.zeros(2, 4))


def test_the_privileged_kl_trains_the_branch_to_shift_the_global_code_less():
    from nerfstudio.data.scene_box import SceneBox

    from nerfstudio_splatdiff.models import losses
    from nerfstudio_splatdiff.models.reconstructor import ReconstructorModelConfig

    torch.manual_seed(0)
    network = VARNetConfig(**SMALL, privileged_view=True, global_code=True, global_code_noise=2.0, privileged_drop=0.0)
    config = ReconstructorModelConfig(network=network, image_size=32, lpips_weight=0.0, privileged_kl_weight=0.5)
    box = SceneBox(aabb=torch.tensor([[-1.0, -1, -1], [1, 1, 1]]))
    model = config.setup(scene_box=box, num_train_data=0, metadata={}, device="cpu")
    x = inputs()
    view = _privileged(x[0])
    before = {n: p.detach().clone() for n, p in model.net.named_parameters()}
    optimiser = torch.optim.SGD(model.get_param_groups()["network"], lr=1e-3)
    sizes = []
    for _ in range(5):
        torch.manual_seed(1)  # the same posterior noise every step: what changes is the branch
        shift = model.net.train()(*x, privileged=view)["privileged_shift"]
        loss = config.privileged_kl_weight * losses.privileged_code_kl(shift, network.global_code_noise)
        sizes.append(float(shift.norm(dim=1).mean()))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert all(b < a for a, b in zip(sizes, sizes[1:])), sizes
    moved = {n.split(".")[0] for n, p in model.net.named_parameters() if not torch.equal(p, before[n])}
    assert "privileged" in moved and "decoder" not in moved  # only what writes the shift pays for it


def test_the_privileged_kl_is_refused_without_the_noise_its_nats_are_counted_against():
    from nerfstudio_splatdiff.models.reconstructor import ReconstructorModelConfig

    quiet = VARNetConfig(**SMALL, privileged_view=True, global_code=True)
    with pytest.raises(SplatdiffError, match="privileged-kl-weight"):
        ReconstructorModelConfig(network=quiet, privileged_kl_weight=1e-3)
    blind = VARNetConfig(**SMALL, global_code=True, global_code_noise=1.0)
    with pytest.raises(SplatdiffError, match="privileged-kl-weight"):
        ReconstructorModelConfig(network=blind, privileged_kl_weight=1e-3)
    with pytest.raises(SplatdiffError, match="privileged-kl-weight"):
        ReconstructorModelConfig(network=RegressionNetConfig(**SMALL), privileged_kl_weight=1e-3)
    noisy = VARNetConfig(**SMALL, privileged_view=True, global_code=True, global_code_noise=1.0)
    assert ReconstructorModelConfig(network=noisy, privileged_kl_weight=1e-3).privileged_code_std == 1.0
