"""Reconstruction: network, loss, mixed batches, trainer (resume = uninterrupted), inference, evaluation."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cranialkit.augment.geometric import preset
from cranialkit.reconstruction.data import MixedBatches, TrainingSource, make_loader, source_from_arrays
from cranialkit.reconstruction.evaluation import best_and_worst, format_table, summarize_by_class
from cranialkit.reconstruction.inference import Reconstructor, load_checkpoint, predict_implants
from cranialkit.reconstruction.losses import soft_dice_loss
from cranialkit.reconstruction.network import ModelConfig, build_network, count_parameters
from cranialkit.reconstruction.trainer import TrainConfig, load_training_state, train
from cranialkit.volume import Volume

torch.set_num_threads(1)


def shells(n: int, size: int = 16, seed: int = 0):
    """``n`` hollow balls with a cap cut off as the implant: (defective, implant, complete) bool (n, s, s, s)."""
    rng = np.random.default_rng(seed)
    grid = np.indices((size,) * 3).astype(float)
    defective, implant = [], []
    for _ in range(n):
        centre = (size - 1) / 2 + rng.uniform(-1, 1, 3)
        r = np.sqrt(((grid - centre[:, None, None, None]) ** 2).sum(0))
        outer = size * rng.uniform(0.36, 0.42)
        shell = (r <= outer) & (r > outer - 2)
        cap = shell & (grid[2] > centre[2] + outer * rng.uniform(0.3, 0.6))
        defective.append(shell & ~cap)
        implant.append(cap)
    defective, implant = np.stack(defective), np.stack(implant)
    return defective, implant, defective | implant


def case_arrays(n: int, size: int = 16, seed: int = 0):
    d, i, c = shells(n, size, seed)
    return SimpleNamespace(defective=d, implant=i, complete=c, spacing_mm=np.full((n, 3), 2.0),
                           defect_classes=["cap"] * n, case_ids=[f"{k:03d}" for k in range(n)])


# ------------------------------------------------------------------------------------------------ network and loss


def test_network_sizes_and_output_shape():
    assert count_parameters(build_network("tiny")) < 500_000
    assert 12e6 <= count_parameters(build_network("paper")) <= 27e6
    out = build_network("tiny")(torch.zeros(2, 1, 16, 16, 16))
    assert out.shape == (2, 1, 16, 16, 16)
    with pytest.raises(ValueError, match="unknown model size"):
        build_network("huge")


def test_network_writes_raw_logits_at_full_resolution():
    """The last layer is a bare transposed convolution: no instance norm / PReLU squashing the logits of one
    channel (which would pin the background near sigmoid 0.5) and no slow one-channel residual unit."""
    for size in ("tiny", "small"):
        net = build_network(size)
        last = net.model[-1]
        assert isinstance(last, torch.nn.ConvTranspose3d) and last.out_channels == 1, f"{size}: {last}"
        with torch.no_grad():
            last.bias.fill_(-5.0)
            last.weight.zero_()
            out = net.eval()(torch.ones(1, 1, 32, 32, 32))
        assert torch.allclose(out, torch.full_like(out, -5.0)), f"{size}: the bias does not reach the output"


def test_model_config_checks_and_round_trips():
    config = ModelConfig("small", "complete", (32, 32, 32))
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="divisible by 16"):
        ModelConfig("small", "implant", (24, 24, 24))
    with pytest.raises(ValueError, match="unknown target"):
        ModelConfig("tiny", "skull")


def test_soft_dice_loss_values():
    target = torch.zeros(2, 1, 8, 8, 8)
    target[:, :, 2:6, 2:6, 2:6] = 1
    perfect = torch.where(target > 0, 30.0, -30.0)
    assert float(soft_dice_loss(perfect, target)) == pytest.approx(0.0, abs=1e-4)
    assert float(soft_dice_loss(-perfect, target)) == pytest.approx(1.0, abs=1e-4)
    half = torch.zeros_like(target)  # p = 0.5 everywhere: Dice = 2·0.5·|T| / (0.5·V + |T|)
    expected = 1 - (2 * 0.5 * 64) / (0.5 * 512 + 64)
    assert float(soft_dice_loss(half, target)) == pytest.approx(expected, abs=1e-3)
    with pytest.raises(ValueError, match="differ"):
        soft_dice_loss(torch.zeros(1, 1, 8, 8, 8), torch.zeros(1, 1, 8, 8, 4))


# ------------------------------------------------------------------------------------------------ data


def test_mixed_batches_are_a_function_of_step_and_follow_weights():
    a = source_from_arrays("a", case_arrays(4, seed=1), weight=3.0, augment=preset("mild"))
    b = TrainingSource("b", *shells(2, seed=2)[:2], weight=1.0)
    mixed = MixedBatches([a, b], batch_size=4, seed=0)
    d1, t1, names1 = mixed.batch(7)
    d2, t2, names2 = mixed.batch(7)
    assert torch.equal(d1, d2) and torch.equal(t1, t2) and names1 == names2
    assert d1.shape == (4, 1, 16, 16, 16) and not torch.equal(mixed.batch(8)[0], d1)
    names = [n for step in range(60) for n in mixed.batch(step)[2]]
    assert names.count("a") / len(names) == pytest.approx(0.75, abs=0.08)
    # DDP: rank parts are the interleaved items of the global batch
    r0, r1 = mixed.batch(7, rank=0, world=2), mixed.batch(7, rank=1, world=2)
    assert torch.equal(r0[0], d1[0::2]) and torch.equal(r1[0], d1[1::2])
    with pytest.raises(ValueError, match="not divisible"):
        mixed.batch(0, world=3)


def test_loader_gives_the_same_batches_as_direct_calls():
    mixed = MixedBatches([source_from_arrays("a", case_arrays(3), augment=preset("extreme"))], batch_size=2, seed=5)
    for step, defective, target in make_loader(mixed, 3, 6, num_workers=0):
        d, t, _ = mixed.batch(step)
        assert torch.equal(defective, d) and torch.equal(target, t)


def test_sources_reject_bad_input():
    d, i, _ = shells(2)
    with pytest.raises(ValueError, match="must be equal"):
        TrainingSource("x", d, i[:, :8])
    with pytest.raises(ValueError, match="bool"):
        TrainingSource("x", d.astype(np.uint8), i)
    with pytest.raises(ValueError, match="weight"):
        TrainingSource("x", d, i, weight=-1)
    with pytest.raises(ValueError, match="different grid"):
        MixedBatches([TrainingSource("x", d, i), TrainingSource("y", *shells(1, size=24)[:2])], 2)
    with pytest.raises(ValueError, match="no training source"):
        MixedBatches([TrainingSource("x", d, i, weight=0)], 2)


# ------------------------------------------------------------------------------------------------ trainer


def _config(steps, **kw):
    base = dict(steps=steps, batch_size=2, lr=3e-3, val_every=3, device="cpu", progress=False, seed=1)
    base.update(kw)
    return TrainConfig(**base)


def test_resume_reaches_the_same_state_as_an_uninterrupted_run(tmp_path):
    sources = [source_from_arrays("cases", case_arrays(4), augment=preset("extreme"))]
    val = case_arrays(2, seed=9)
    model_config = ModelConfig("tiny", "implant", (16, 16, 16))
    straight = train(model_config, _config(6), sources, val, tmp_path / "straight")
    stopped = train(model_config, _config(6), sources, val, tmp_path / "resumed", stop_after=3)
    assert stopped.step == 3 and not stopped.finished
    assert load_training_state(tmp_path / "resumed" / "last.pt")["step"] == 3
    resumed = train(model_config, _config(6), sources, val, tmp_path / "resumed")
    assert resumed.step == 6 and resumed.finished
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert [r["loss"] for r in straight.history["train"]] == [r["loss"] for r in resumed.history["train"]]
    assert [r["dsc"] for r in straight.history["val"]] == [r["dsc"] for r in resumed.history["val"]]
    assert len(resumed.history["val"]) == 2  # steps 3 and 6
    # a different seed gives a different run
    other = train(model_config, _config(6, seed=2), sources, None, None)
    assert not torch.equal(next(iter(other.model.parameters())), next(iter(straight.model.parameters())))


def test_training_learns_and_checkpoints_load_weights_only(tmp_path):
    arrays = case_arrays(6, seed=3)
    sources = [source_from_arrays("cases", arrays, target="complete")]
    result = train(ModelConfig("tiny", "complete", (16, 16, 16)), _config(40, val_every=20, lr=1e-2), sources,
                   arrays, tmp_path)
    losses = [r["loss"] for r in result.history["train"]]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.1
    assert [r["step"] for r in result.history["val"]] == [20, 40]
    assert all(0 <= r["dsc"] <= 1 and 0 <= r["bdsc"] <= 1 for r in result.history["val"])
    state = torch.load(tmp_path / "best.pt", weights_only=True)
    assert state["model_config"]["target"] == "complete" and state["best_dsc"] == max(
        r["dsc"] for r in result.history["val"])
    model, config = load_checkpoint(tmp_path / "best.pt")
    assert config == ModelConfig("tiny", "complete", (16, 16, 16))
    pred = predict_implants(model, arrays.defective, config.target)
    assert pred.shape == arrays.defective.shape and not (pred & arrays.defective).any()
    assert (tmp_path / "history.json").is_file()


def test_trainer_rejects_mismatches(tmp_path):
    sources = [source_from_arrays("cases", case_arrays(2))]
    with pytest.raises(ValueError, match="grid"):
        train(ModelConfig("tiny", "implant", (32, 32, 32)), _config(1), sources)
    with pytest.raises(ValueError, match="targets"):
        train(ModelConfig("tiny", "complete", (16, 16, 16)), _config(1), sources)
    train(ModelConfig("tiny", "implant", (16, 16, 16)), _config(1), sources, None, tmp_path)
    with pytest.raises(ValueError, match="checkpoint is for"):
        train(ModelConfig("small", "implant", (16, 16, 16)), _config(2), sources, None, tmp_path)
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="broken.pt"):
        load_checkpoint(tmp_path / "broken.pt")
    old_layers = {"model": {"model.2.0.conv.weight": torch.zeros(16, 1, 3, 3, 3)},
                  "model_config": ModelConfig("tiny", "implant", (16, 16, 16)).to_dict()}
    torch.save(old_layers, tmp_path / "old_network.pt")
    with pytest.raises(ValueError, match="old_network.pt: the saved weights do not fit"):
        load_checkpoint(tmp_path / "old_network.pt")
    with pytest.raises(ValueError, match="TrainConfig.steps"):
        TrainConfig(steps=0)


# ------------------------------------------------------------------------------------------------ inference


class _Oracle(torch.nn.Module):
    """A fake 'network' that returns large logits on a fixed complete skull (to test the pipeline around it)."""

    def __init__(self, complete: np.ndarray):
        super().__init__()
        self.register_buffer("complete", torch.from_numpy(complete).float()[None, None])

    def forward(self, x):
        return (self.complete * 2 - 1).expand_as(x) * 20


def test_reconstructor_returns_implant_on_the_original_grid():
    # a 16³ shell embedded in a larger anisotropic, oblique grid: to_grid crops/resamples it to 16³ and back
    d, i, c = shells(1, size=16, seed=4)
    big_d, big_i = np.zeros((24, 20, 30), bool), np.zeros((24, 20, 30), bool)
    big_d[4:20, 2:18, 7:23], big_i[4:20, 2:18, 7:23] = d[0], i[0]
    rotation = np.array([[1, 0, 0], [0, np.cos(0.2), -np.sin(0.2)], [0, np.sin(0.2), np.cos(0.2)]])
    # 3 mm voxels: the 32³ network grid (box + 10 mm margin) is finer than the original, so the way back is exact
    defective = Volume(big_d, spacing=(3.0, 3.0, 3.0), origin=(5.0, -3.0, 2.0), direction=rotation)
    from cranialkit.preprocessing import to_grid

    config = ModelConfig("tiny", "complete", (32, 32, 32))
    small_complete, _ = to_grid(defective.with_array(big_d | big_i), shape=config.shape, reference=big_d)
    reconstructor = Reconstructor(_Oracle(np.asarray(small_complete.array, bool)), config, device="cpu")
    implant = reconstructor.reconstruct(defective)
    assert implant.same_grid(defective) and implant.array.dtype == bool
    assert not (implant.array & big_d).any()
    assert 2 * (implant.array & big_i).sum() / (implant.array.sum() + big_i.sum()) > 0.9


# ------------------------------------------------------------------------------------------------ evaluation tables


def test_summaries_per_class_and_best_worst():
    rows = [
        {"key": "a/1", "case_id": "1", "defect_class": "a", "dsc": 0.8, "bdsc": 0.7, "hd95": 2.0, "seconds": 1.0},
        {"key": "a/2", "case_id": "2", "defect_class": "a", "dsc": 0.6, "bdsc": 0.5, "hd95": 4.0, "seconds": 1.0},
        {"key": "b/1", "case_id": "1", "defect_class": "b", "dsc": 0.9, "bdsc": 0.9, "hd95": 1.0, "seconds": 1.0},
    ]
    summary = {s["defect_class"]: s for s in summarize_by_class(rows)}
    assert summary["a"]["dsc"] == pytest.approx(0.7) and summary["a"]["n"] == 2
    assert summary["mean of classes"]["dsc"] == pytest.approx(0.8)
    assert summary["all cases"]["hd95"] == pytest.approx(7 / 3)
    best, worst = best_and_worst(rows, n=1)
    assert best[0]["key"] == "b/1" and worst[0]["key"] == "a/2"
    text = format_table(summarize_by_class(rows))
    assert "mean of classes" in text and "0.700" in text
    rows.append({**rows[0], "key": "c/1", "defect_class": "c", "dsc": math.nan})
    assert math.isnan(summarize_by_class(rows)[2]["dsc"])


def test_dataloader_workers_give_the_same_training_as_the_main_process():
    sources = [source_from_arrays("cases", case_arrays(3), augment=preset("mild"))]
    model_config = ModelConfig("tiny", "implant", (16, 16, 16))
    main = train(model_config, _config(2), sources)
    workers = train(model_config, _config(2, num_workers=1), sources)
    for a, b in zip(main.model.state_dict().values(), workers.model.state_dict().values()):
        assert torch.equal(a, b)
