"""smoe-study: expert specialization in the SMoE-VAE (sparse mixture-of-experts VAE).

Modules:
    smoe.model    SMoEVAE, the model (Nikolic, Oguz, Psaltis, arXiv:2509.10025)
    smoe.losses   smoe_loss, its training objective
    smoe.metrics  purity, NMI, ARI and expert-usage metrics of hard-gated assignments
    smoe.train    fit, TrainConfig, Checkpoint and the `python -m smoe.train` command line
    smoe.data     QuickDraw readers, downloader, bundled sample and dataset assembly
"""

from smoe.losses import smoe_loss
from smoe.model import SMoEOutput, SMoEVAE

__version__ = "0.1.0"

__all__ = ["SMoEOutput", "SMoEVAE", "__version__", "smoe_loss"]
