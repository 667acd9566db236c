"""Downstream applications of a trained multiformer: downscaling through a fine-resolution field with its
own tail, fine-tuned on paired data (:mod:`.pairs`, :mod:`.model`, :mod:`.finetune`), scored against
interpolation (:mod:`.evaluate`, :mod:`.spectrum`)."""

from atmorep_coupler.downstream.model import DownscalingConfig, downscaling_model, downscaling_model_config

__all__ = ["DownscalingConfig", "downscaling_model", "downscaling_model_config"]
