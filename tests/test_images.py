"""The one [-1, 1] <-> uint8 conversion (cascade_core.images) and the training progress bar."""
import io

import numpy as np
import torch

import cascade_core as cc


def test_uint8_round_trip_is_exact_on_the_256_levels():
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    x = cc.from_uint8(pixels)
    assert x.shape == (1, 3, 16, 16) and x.dtype == torch.float32
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    assert np.array_equal(cc.to_uint8(x), pixels)


def test_one_image_and_a_batch_keep_their_layouts():
    img = torch.linspace(-1, 1, 3 * 4 * 5).view(3, 4, 5)
    assert cc.to_uint8(img).shape == (4, 5, 3)
    assert cc.to_uint8(img[None]).shape == (1, 4, 5, 3)
    assert np.array_equal(cc.to_uint8(img), cc.to_uint8(img[None])[0])
    assert cc.from_uint8(cc.to_uint8(img)).shape == (3, 4, 5)


def test_to_uint8_clamps_and_rounds_to_the_nearest_level():
    x = torch.tensor([-3.0, -1.0, 0.0, 1.0 / 255, 1.0, 7.0]).view(1, 1, 1, 6).expand(1, 3, 1, 6)
    assert cc.to_uint8(x)[0, 0, :, 0].tolist() == [0, 0, 128, 128, 255, 255]
    assert int(cc.to_uint8(torch.full((3, 1, 1), 2 / 255 - 1))[0, 0, 0]) == 1  # 1.0 rounds to 1


def test_from_uint8_takes_tensors_and_does_not_alias_its_input():
    pixels = np.full((2, 2, 3), 255, dtype=np.uint8)
    x = cc.from_uint8(torch.from_numpy(pixels))
    pixels[:] = 0
    assert torch.equal(x, torch.ones(3, 2, 2))


def test_progress_bar_shows_step_loss_and_rate():
    from train.feedback import Progress
    stream = io.StringIO()
    bar = Progress(total=10, start=2, stream=stream)
    bar.update(7, loss=0.1234, images_per_s=56.7, lr=3e-4, force=True)
    bar.close()
    text = stream.getvalue()
    assert "7/10" in text and "loss 0.1234" in text and "56.7 img/s" in text and "3.00e-04" in text
    quiet = io.StringIO()
    Progress(total=10, start=0, enabled=False, stream=quiet).update(5, 1.0, 1.0, 1.0, force=True)
    assert quiet.getvalue() == ""

