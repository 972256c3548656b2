"""Evaluation: `python evaluate.py experiment=demo evaluate.methods.dctnet=<folder>`. See conf/evaluate.yaml."""

import hydra
from omegaconf import DictConfig

from dctnet.config import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from dctnet.metrics.run import run_evaluation

    print(f"report: {run_evaluation(cfg)}")


if __name__ == "__main__":
    main()
