"""A pyannote speaker-diarization pipeline built offline: a trained segmentation model, a tiny embedding.

`pyannote.audio.Pipeline.from_pretrained(<dir>)` reads `<dir>/config.yaml`; `$model/<sub>` entries
resolve to subfolders of that directory, so the pipeline loads exactly as a downloaded
`pyannote/speaker-diarization-community-1` does, with no hub:

- `segmentation/`: the trained pyannote segmentation model whisperx ships in its wheel (its VAD);
  real speaker turns, so the diarization error rate on real speech means something;
- `embedding/`: pyannote's own `XVectorMFCC`, in pyannote's checkpoint format, its weights set from
  code so that it embeds a speaker as MFCC statistics (random weights cannot tell two voices apart).
  The folder name matters: a path naming "wespeaker", "speechbrain" or "nvidia" goes to another
  loader, and WeSpeaker ResNet34 takes minutes for half a minute of audio on CPU;
- `plda/`: the PLDA files VBx clustering reads (the pipeline always loads them), written as an
  identity transform: VBx then clusters the unit-normalised embeddings as they are;
- `config.yaml` with its required `params` section (the tuned thresholds a real pipeline ships).

The segmentation window steps by half its length (real pipelines: a tenth): a quarter of the
embeddings, so a 2-core laptop diarizes faster than real time.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from serve_app.tools.tiny_models.offline import force_offline_defaults

EMBEDDING_DIMENSION = 128  # VBx's PLDA keeps 128 dimensions (pyannote's default lda_dimension)
SEGMENTATION_STEP = 0.5
_SEED = 0


def whisperx_segmentation_checkpoint() -> Path:
    import whisperx

    return Path(whisperx.__file__).parent / "assets" / "pytorch_model.bin"


def pipeline_config() -> dict:
    return {
        "pipeline": {
            "name": "pyannote.audio.pipelines.SpeakerDiarization",
            "params": {
                "segmentation": "$model/segmentation",
                "embedding": "$model/embedding",
                "plda": "$model/plda",
                "clustering": "VBxClustering",
                "segmentation_step": SEGMENTATION_STEP,
                "embedding_exclude_overlap": True,
                "segmentation_batch_size": 32,
                "embedding_batch_size": 32,
            },
        },
        # Required: without it the pipeline's hyper-parameters stay uninstantiated. The segmentation
        # model is multi-label (not powerset), so it takes a threshold.
        "params": {
            "segmentation": {"threshold": 0.5, "min_duration_off": 0.0},
            "clustering": {"threshold": 0.6, "Fa": 0.07, "Fb": 0.8},
        },
    }


def _write_embedding(out: Path) -> None:
    import lightning
    import torch
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding.xvector import XVectorMFCC

    torch.manual_seed(_SEED)
    model = XVectorMFCC(dimension=EMBEDDING_DIMENSION).eval()
    _mfcc_statistics(model)
    model.specifications = Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=3.0)
    # What Lightning's save_checkpoint writes and pyannote's Model.from_pretrained reads back.
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    model.on_save_checkpoint(checkpoint)  # pyannote's versions, architecture and specifications
    out.mkdir(parents=True)
    torch.save(checkpoint, out / "pytorch_model.bin")


def _mfcc_statistics(model) -> None:
    """Set the x-vector's weights so that its embedding is the (masked) mean and spread of each MFCC.

    Random weights give embeddings that barely tell two speakers apart (every pair's cosine is ~0.999).
    Per-speaker MFCC statistics, the classic pre-neural speaker features, do: each TDNN layer passes
    a coefficient through unchanged (as a positive and a negative half, so LeakyReLU keeps both), stats
    pooling takes their mean and standard deviation over the speaker's frames, and the last layer
    reassembles them. c0 (loudness) is left out: it says how far the speaker is from the microphone.
    """
    import torch

    n_mfcc = model.hparams.mfcc["n_mfcc"]
    coefficients = range(1, n_mfcc)
    halves = 2 * len(coefficients)
    assert halves + len(coefficients) <= EMBEDDING_DIMENSION + len(coefficients)
    with torch.no_grad():
        for module in model.tdnns:
            if isinstance(module, torch.nn.Conv1d):
                module.weight.zero_()
                module.bias.zero_()
        first, *rest = [m for m in model.tdnns if isinstance(m, torch.nn.Conv1d)]
        centre = first.kernel_size[0] // 2
        for i, c in enumerate(coefficients):
            first.weight[2 * i, c, centre] = 1.0
            first.weight[2 * i + 1, c, centre] = -1.0
        for conv in rest:
            tap = conv.kernel_size[0] // 2
            for j in range(halves):
                conv.weight[j, j, tap] = 1.0
        # Batch norms keep their initial (identity) statistics. Pooled: [means of 1500 channels, stds of 1500].
        channels = rest[-1].out_channels
        model.embedding.weight.zero_()
        model.embedding.bias.zero_()
        for i in range(len(coefficients)):
            if i < EMBEDDING_DIMENSION:
                model.embedding.weight[i, 2 * i] = 1.0  # mean(x+) - mean(x-) = mean(x)
                model.embedding.weight[i, 2 * i + 1] = -1.0
            k = len(coefficients) + i
            if k < EMBEDDING_DIMENSION:
                model.embedding.weight[k, channels + 2 * i] = 1.0  # spread of x, from its two halves
                model.embedding.weight[k, channels + 2 * i + 1] = 1.0


def _write_plda(out: Path) -> None:
    import numpy as np

    d = EMBEDDING_DIMENSION
    out.mkdir(parents=True)
    np.savez(out / "xvec_transform.npz", mean1=np.zeros(d), mean2=np.zeros(d), lda=np.eye(d))
    np.savez(out / "plda.npz", mu=np.zeros(d), tr=np.eye(d), psi=np.ones(d))


def build_tiny_diarization(out: Path) -> None:
    force_offline_defaults()
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    (out / "segmentation").mkdir()
    shutil.copyfile(whisperx_segmentation_checkpoint(), out / "segmentation" / "pytorch_model.bin")
    _write_embedding(out / "embedding")
    _write_plda(out / "plda")
    (out / "config.yaml").write_text(yaml.safe_dump(pipeline_config(), sort_keys=False))
