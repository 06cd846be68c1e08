"""The main job: houses and splits -> expert store -> offline BC -> online DAgger -> eval -> report.

Every stage writes into runs/<name>/ and is recorded in runs/<name>/stages.json when it finishes,
so running the same name again skips finished stages (a killed run resumes at its stage).

    data/       train + val_unseen splits (R2R-CE files)
    store/      the episode store: expert episodes, then the actors' DAgger episodes
    offline/    offline training (checkpoints, tensorboard, metrics.jsonl, model/), or model/ copied from
                the config's start_model (a further DAgger round on an earlier model)
    online/     online learner (weights/v<N>/, checkpoints, metrics.jsonl) and actor logs
    eval/       <policy>.jsonl per-episode results
    metrics.json, report.md, loss.png, success.png, episode.gif
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from tqdm.auto import tqdm

from streamvln.pipeline.config import RunConfig

if TYPE_CHECKING:
    from streamvln.pipeline.evaluation import EvalSettings

STAGES = ("data", "collect", "qa", "offline", "online", "eval", "report")


class Pipeline:
    def __init__(self, config: RunConfig, console: Console | None = None):
        self.config = config
        self.dir = config.run_dir
        self.console = console or Console()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._stages_file = self.dir / "stages.json"
        self.state: dict = json.loads(self._stages_file.read_text()) if self._stages_file.is_file() else {}

    # ------------------------------------------------------------------ driver
    def run(self) -> dict:
        started = time.perf_counter()
        (self.dir / "run_config.json").write_text(json.dumps(_as_dict(self.config), indent=1))
        for stage in STAGES:
            if (stage == "online" and not self.config.online.enabled) or (stage == "qa" and not self.config.qa.enabled):
                continue
            if stage in self.state:
                self.console.print(f"[dim]stage {stage}: done earlier ({self.state[stage]['seconds']:.0f} s), skipped")
                continue
            self.console.rule(f"[bold]{stage}")
            t0 = time.perf_counter()
            info = getattr(self, f"stage_{stage}")() or {}
            self.state[stage] = {"seconds": time.perf_counter() - t0, **info}
            self._stages_file.write_text(json.dumps(self.state, indent=1))
        total = time.perf_counter() - started
        self.console.print(f"[bold green]run {self.config.name} finished in {total / 60:.1f} min -> {self.dir}")
        return json.loads((self.dir / "metrics.json").read_text())

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def store_dir(self) -> Path:
        return self.dir / "store"

    # ------------------------------------------------------------------ stages
    def stage_data(self) -> dict:
        from envs.episodes.generator import GeneratorConfig, generate_split
        from envs.episodes.io import save_split

        cfg = self.config.data
        generator = GeneratorConfig(episodes_per_house=cfg.episodes_per_house, min_geodesic_m=cfg.min_geodesic_m,
                                    max_geodesic_m=cfg.max_geodesic_m)
        counts = {}
        splits = [("train", cfg.train_episodes), ("val_unseen", cfg.val_episodes)]
        if cfg.val_seen_episodes:  # new episodes in the first training houses
            splits.append(("val_seen", cfg.val_seen_episodes))
        for split, count in splits:
            with tqdm(total=count, desc=f"generate {split}", unit="ep") as bar:
                episodes, gt = generate_split(split, count, seed=cfg.seed, config=generator,
                                              on_house=lambda _scene, made, bar=bar: bar.update(made - bar.n),
                                              workers=cfg.processes)
            save_split(self.data_dir, split, episodes, gt)
            counts[split] = len(episodes)
        return {**counts, "workers": cfg.processes}

    def stage_collect(self) -> dict:
        from envs.episodes.io import load_split
        from rollout.collect import CollectConfig, collect_expert_parallel
        from rollout.store import EpisodeStore

        sensors, workers = self.config.sensors, self.config.data.processes
        episodes, _ = load_split(self.data_dir, "train")
        store = EpisodeStore(self.store_dir)
        with tqdm(total=len(episodes), desc="collect expert", unit="ep") as bar:
            names = collect_expert_parallel(episodes, store, (sensors.width, sensors.height, sensors.hfov_deg),
                                            CollectConfig(workers=workers), on_episode=lambda *_: bar.update(1))
        return {"episodes": len(names), "steps": store.stats()["steps"], "workers": workers}

    def stage_qa(self) -> dict:
        from envs.embedded import EmbeddedBackend, EmbeddedConfig
        from envs.episodes.generator import house_seeds_for
        from rollout.qa.scene_qa import SceneQAConfig, generate_scene_qa, kind_counts, save_scene_qa

        qa, sensors = self.config.qa, self.config.sensors
        config = SceneQAConfig(qa.frames_per_path, qa.questions_per_path, seed=self.config.seed)
        config.validate()
        # The training houses only (val_unseen houses stay unseen).
        scene_ids = [f"procedural/house_{seed:06d}" for seed in list(house_seeds_for("train"))[: qa.scenes]]
        backend = EmbeddedBackend(EmbeddedConfig(**sensors.as_kwargs(), depth=False))
        try:
            records = generate_scene_qa(backend, scene_ids, qa.paths_per_scene, config)
        finally:
            backend.close()
        self.qa_file.parent.mkdir(parents=True, exist_ok=True)
        save_scene_qa(records, self.qa_file)
        return {"records": len(records), "kinds": kind_counts(records)}

    @property
    def qa_file(self) -> Path:
        return self.dir / "qa" / "scene_qa.msgpack"

    def stage_offline(self) -> dict:
        from training.online import write_window_settings
        from training.run import run_training

        if self.config.start_model:  # a further round from an earlier model: nothing to train here
            model = self.dir / "offline" / "model"
            shutil.copytree(self.config.start_model, model, dirs_exist_ok=True)
            return {"steps": 0, "model": str(model), "start_model": self.config.start_model}
        config = self.train_config(self.dir / "offline", int(self.config.train.get("steps", 100)))
        result = run_training(config, export=True)
        write_window_settings(result.export_dir, config)
        return {"steps": result.steps, "loss": result.last_scalars.get("loss"), "model": str(result.export_dir)}

    def stage_online(self) -> dict:
        import torch

        from rollout.actor_processes import wait_or_terminate
        from rollout.store import EpisodeStore
        from training.online import OnlineConfig, OnlineLearner

        online = self.config.online
        out = self.dir / "online"
        config = self.online_train_config()
        token = secrets.token_hex(16)
        learner = OnlineLearner(config, OnlineConfig(
            store=str(self.store_dir), episodes_address="tcp://127.0.0.1:0", weights_address="tcp://127.0.0.1:0",
            token=token, publish_every=online.publish_every, max_policy_lag=online.max_policy_lag,
            min_episodes=len(EpisodeStore(self.store_dir)) + online.min_new_episodes,
            wait_timeout_s=online.wait_timeout_s))
        addresses = learner.start_transport()
        actors = [self._spawn_actor(index, addresses, token, out) for index in range(online.actors)]
        threads = torch.get_num_threads()
        # Actors run on this machine too: oversubscribed torch (OpenMP) threads spin and slow the
        # learner many times over, so it leaves one core per actor process.
        torch.set_num_threads(max(1, min(threads, (os.cpu_count() or 1) - online.actors)))
        try:
            result = learner.run()
        except TimeoutError as error:
            raise TimeoutError(f"{error}; see the actor logs {out}/actor-*.log") from None
        finally:
            torch.set_num_threads(threads)
            learner.stop()
            codes = [wait_or_terminate(process, 60.0) for process in actors]
        self.console.print(f"online: {result.steps} steps, {result.versions} weight versions, "
                           f"{result.episodes_ingested} DAgger episodes from {online.actors} actor(s), "
                           f"rejected {result.rejected or 'none'}, actor exit codes {codes}")
        return {"steps": result.steps, "versions": result.versions, "episodes": result.episodes_ingested,
                "rejected": result.rejected, "model": str(result.final_weights), "data_wait": result.data_wait}

    def online_train_config(self):
        """The online learner's TrainConfig: from the offline model, the online lr, DAgger episodes weighted."""
        online = self.config.online
        nav_view = {} if online.dagger_weight == 1.0 else {
            "weighting": "weighted", "source_weights": {"dagger": online.dagger_weight}}
        config = self.train_config(self.dir / "online", online.steps, model_path=str(self.dir / "offline" / "model"),
                                   nav_view=nav_view)
        if online.lr is not None:  # one peak for every group (the offline ratios are a from-scratch choice)
            config.optim.lr = config.optim.vision_tower_lr = online.lr
            config.optim.projector_lr = None
        return config

    def actor_process_config(self):
        """The online stage's actors (rollout.actor_processes.ActorProcessConfig) from the run config."""
        from rollout.actor_processes import ActorProcessConfig

        online, sensors = self.config.online, self.config.sensors
        return ActorProcessConfig(
            data=str(self.data_dir), split="train", envs=online.envs_per_actor, sensors=sensors,
            max_steps=online.actor_max_steps, dagger_p=online.dagger_p, intervene_after=online.intervene_after,
            chunk_mixing=online.chunk_mixing, accept_stop_m=online.accept_stop_m,
            executed_in_context=online.executed_in_context,
            max_policy_lag=online.max_policy_lag, wait_weights_s=600.0, seed=self.config.seed)

    def _spawn_actor(self, index: int, addresses: dict, token: str, out: Path) -> subprocess.Popen:
        from rollout.actor_processes import spawn_actor

        return spawn_actor(self.actor_process_config(), index, addresses, token, out)

    def trained_model(self) -> Path:
        if self.config.online.enabled and "online" in self.state:
            return Path(self.state["online"]["model"])
        return self.dir / "offline" / "model"

    def eval_jobs(self, split: str) -> list[tuple[str, str, EvalSettings]]:
        """(label, policy spec, settings) of every row evaluated on `split`."""
        from streamvln.pipeline.evaluation import EvalSettings

        cfg, sensors = self.config.eval, self.config.sensors
        base = EvalSettings(str(self.data_dir), split, sensors, cfg.max_steps, self.config.seed, cfg.workers,
                            cfg.episodes, blank_instruction=self.config.instruction_blind)
        trained = f"checkpoint:{self.trained_model()}"
        models = {"trained": trained, "offline": f"checkpoint:{self.dir / 'offline' / 'model'}"}
        jobs = [(label, models[label], dataclasses.replace(base, voxel_pruning=cfg.voxel_pruning))
                if label in models else (label, label, base) for label in cfg.policies]
        jobs += [(v.label, trained, dataclasses.replace(base, scheme=v.scheme, voxel_pruning=v.voxel_pruning,
                                                        stop_bias=v.stop_bias)) for v in cfg.variants]
        return jobs

    def results_file(self, split: str, label: str) -> Path:
        suffix = "" if split == "val_unseen" else f".{split}"  # val_unseen keeps the first release's names
        return self.dir / "eval" / f"{label.replace(':', '_')}{suffix}.jsonl"

    def stage_eval(self) -> dict:
        from streamvln.pipeline.evaluation import evaluate_policy
        from streamvln.pipeline.report import metrics_table

        per_split: dict[str, dict] = {}
        for split in self.config.eval.splits:
            summaries = {}
            for label, spec, settings in self.eval_jobs(split):
                with tqdm(desc=f"eval {label} ({split})", unit="ep") as bar:
                    def progress(done: int, total: int, bar=bar) -> None:
                        bar.total = total
                        bar.update(done - bar.n)

                    summary = evaluate_policy(spec, settings, self.results_file(split, label), progress)
                summaries[label] = summary["aggregate"] | {"episodes": summary["num_episodes"]}
            per_split[split] = summaries
            self.console.print(metrics_table(summaries, title=split))
        metrics = {"run": self.config.name, "split": "val_unseen", "policies": per_split["val_unseen"],
                   "splits": per_split, "trained_model": str(self.trained_model()),
                   "instruction_blind": self.config.instruction_blind, "command": self.config.command}
        (self.dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        maps = {}
        if self.config.eval.maps and "trained" in self.config.eval.policies:
            from streamvln.pipeline.maps import write_episode_maps

            maps = write_episode_maps(self.results_file("val_unseen", "trained"), self.data_dir, "val_unseen",
                                      self.dir, self.config.eval.max_steps)
        return {"maps": maps}

    def stage_report(self) -> dict:
        from streamvln.pipeline.report import write_report

        path = write_report(self.dir, self.config, self.state, self.trained_model())
        self.console.print(f"report: {path}")
        return {"report": str(path)}

    # ------------------------------------------------------------------ helpers
    def train_config(self, out_dir: Path, steps: int, model_path: str = "", nav_view: dict | None = None):
        """The learner's TrainConfig: the run's `train` values over the episode store (+ scene QA);
        `nav_view`: options of the store's rollout.view.ViewConfig (sampling weights)."""
        from training.config import config_from_dict

        values = copy.deepcopy(self.config.train)
        values.update(out_dir=str(out_dir), steps=steps, model_path=model_path, seed=self.config.seed)
        if model_path:  # the saved model carries its config (preset overrides included)
            values.pop("model_overrides", None)
        data = values.setdefault("data", {})
        data["sources"] = [{"kind": "store", "path": str(self.store_dir), "weight": 1.0, "name": "nav",
                            "options": dict(nav_view or {})},
                           *data.get("sources", [])]
        if self.config.qa.enabled:
            data["sources"].append({"kind": "scene_qa", "path": str(self.qa_file), "weight": self.config.qa.weight,
                                    "name": "scene_qa"})
        config = config_from_dict(values, where="train (run config)")
        config.validate()
        return config


def _as_dict(config: RunConfig) -> dict:
    import dataclasses

    return dataclasses.asdict(config)
