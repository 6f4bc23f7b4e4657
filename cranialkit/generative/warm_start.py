"""Start IntroVAE and Soft-IntroVAE from a trained VAE: their warm-up *is* a plain VAE.

Taught in notebooks 06_introvae and 07_soft_introvae. Both models begin with ``warmup_steps`` plain-VAE steps
(:meth:`~cranialkit.generative.vae.VAEFamily.warmup_step`) before their adversarial game:

- IntroVAE's warm-up loss is ``KL + β · L_AE = β · (L_AE + KL / β)``: the VAE loss with KL weight ``1/β``, times β;
- Soft-IntroVAE's is ``β_rec · L_rec + β_kl · KL = β_rec · (L_rec + (β_kl / β_rec) · KL)``.

Adam's update ``m / (√v + ε)`` does not change when the loss is multiplied by ``s``, provided its moment estimates
are scaled with it (``m`` by ``s``, ``v`` by ``s²``) — up to ε = 1e-8, which only matters for weights whose
gradients stay below ≈ 1e-7 (in notebook 04's VAE no weight has √v̂ below 1e-7, and 0.9 % below 1e-6). So a VAE
with the same architecture and KL weight, trained with the same batch size, learning rate and seed for
``warmup_steps`` steps, *is* the warm-up (exactly so for Soft-IntroVAE with β_rec = 1, tested):
its weights, its Adam state (moments rescaled, split into the encoder's and the decoder's optimizers), its step
count, its loss history (in the model's terms) and its random-number state make the model's training checkpoint at
the end of the warm-up, and :meth:`~cranialkit.generative.base.Generator.fit` resumes from it into the adversarial
steps. With the recipes' settings that VAE is notebook 04's model: notebooks 06 and 07 reuse it instead of
training the same VAE again (≈ 6 minutes each on a 2-core CPU).
"""

from __future__ import annotations

from pathlib import Path

import torch

from cranialkit.checkpoints import read_checkpoint
from cranialkit.generative.base import get_generator
from cranialkit.generative.vae import VAEFamily

# The settings a VAE shares with the model whose warm-up it stands for (architecture and reconstruction loss).
SHARED_SETTINGS = ("resolution", "latent_dim", "base_channels", "max_channels", "dice_weight", "output")


def warmup_vae_config(model: VAEFamily) -> dict:
    """The VAE configuration whose training equals ``model``'s warm-up: the same architecture and reconstruction
    loss, KL weight ``kl_weight / rec_weight`` of the model's warm-up, no overlap term."""
    rec_weight, kl_weight = model.warmup_weights()
    config = {key: model.config[key] for key in SHARED_SETTINGS if key in model.config}
    return {**config, "beta": kl_weight / rec_weight, "overlap_weight": 0.0}


def _parameter_names(module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Names (in ``module``) of the parameters of ``optimizer``, in its own order."""
    by_id = {id(p): name for name, p in module.named_parameters()}
    return [by_id[id(p)] for group in optimizer.param_groups for p in group["params"]]


def write_warmup_checkpoint(model: VAEFamily, vae_checkpoint: str | Path, path: str | Path) -> Path:
    """Write ``model``'s training checkpoint at the end of its warm-up to ``path``, made from the finished VAE
    training checkpoint ``vae_checkpoint`` (see the module docstring). ``model.fit(..., checkpoint_path=path)`` then
    resumes with the adversarial steps.

    Raises ``ValueError`` naming the file when it is not a VAE checkpoint, when its settings differ from those of
    the model's warm-up (:func:`warmup_vae_config`), or when it stopped at another step than ``warmup_steps``.
    """
    vae_checkpoint, path = Path(vae_checkpoint), Path(path)
    warmup_steps = int(model.config["warmup_steps"])
    ckpt = read_checkpoint(vae_checkpoint, "generator")
    if ckpt.get("name") != "vae":
        raise ValueError(f"{vae_checkpoint}: a checkpoint of {ckpt.get('name')!r}, not of a VAE")
    expected = warmup_vae_config(model)
    differing = {k: (ckpt["config"].get(k), v) for k, v in expected.items() if ckpt["config"].get(k) != v}
    if differing:
        raise ValueError(f"{vae_checkpoint}: this VAE is not {model.name}'s warm-up; settings (VAE, needed) differ: "
                         f"{differing}")
    if int(ckpt["step"]) != warmup_steps:
        raise ValueError(f"{vae_checkpoint}: the VAE stopped at step {ckpt['step']}, the warm-up of {model.name} has "
                         f"{warmup_steps} steps")

    vae = get_generator("vae")(**ckpt["config"])
    vae_optimizer = vae.optimizers(1.0)["model"]
    vae_state = ckpt["optimizers"]["model"]
    moments = {name: vae_state["state"][i] for i, name in enumerate(_parameter_names(vae, vae_optimizer))
               if i in vae_state["state"]}
    lr = float(vae_state["param_groups"][0]["lr"])
    rec_weight, kl_weight = model.warmup_weights()  # the model's warm-up loss = rec_weight × the VAE's loss

    model.to("cpu")
    model.load_state_dict(ckpt["state_dict"])
    model.optim = model.optimizers(lr)
    for optimizer in model.optim.values():
        state = optimizer.state_dict()
        for index, name in enumerate(_parameter_names(model, optimizer)):
            if name not in moments:  # a parameter the VAE never updated
                continue
            source = moments[name]
            state["state"][index] = {"step": source["step"].clone(), "exp_avg": source["exp_avg"] * rec_weight,
                                     "exp_avg_sq": source["exp_avg_sq"] * rec_weight**2}
        optimizer.load_state_dict(state)

    history: dict[str, list[float]] = {}
    for rec, kl in zip(ckpt["history"]["reconstruction"], ckpt["history"]["kl"]):
        for key, value in model.warmup_terms(rec_weight * rec + kl_weight * kl, rec, kl).items():
            history.setdefault(key, []).append(float(value))
    model._save_training_checkpoint(path, warmup_steps, history, None, rng=ckpt["rng"])
    return path
