"""
XCS224N's helper API (src/submission/helper.py of its handout), over this project's modules:

    model = initialize_vanilla_model(GPTConfig(pretrain_dataset.vocab_size, pretrain_dataset.block_size))
    trainer_config, trainer = pretrain(pretrain_dataset, pretrain_dataset.block_size, model)
    train(model, "submission/vanilla.pretrain.params", trainer)

pretrain() and finetune() return the recipe of the pretraining dataset's course (course.py), which the
course's grader checks; train() runs it with this project's fast paths (speed.py) and writes the params.
"""
from dataclasses import replace

import speed
from course import RECIPE
from dataset import NameDataset
from model import GPT
from params import load_params, save_params
from trainer import Trainer, TrainerConfig
from utils import read_text, resolve_device


def initialize_vanilla_model(mconf):
    return GPT(mconf)


def initialize_rope_model(mconf):
    mconf.rope = True
    return GPT(mconf)


def initialize_synthesizer_model(mconf):
    mconf.synthesizer = True
    return GPT(mconf)


def pretrain(pretrain_dataset, block_size, model, pretrain_lr=RECIPE.pretrain_lr, writer=None):
    """(trainer_config, trainer) of the recipe's span-corruption pretraining at lr pretrain_lr."""
    schedule = pretrain_dataset.course.pretrain_schedule(len(pretrain_dataset), block_size, learning_rate=pretrain_lr)
    config = TrainerConfig(**schedule, num_workers=RECIPE.num_workers, writer=writer, device=resolve_device("auto"),
                           desc="pretrain")
    return config, Trainer(model, pretrain_dataset, None, config)


def finetune(reading_params_path, finetune_corpus_path, pretrain_dataset, block_size, model,
             finetune_lr=RECIPE.finetune_lr, writer=None):
    """(trainer_config, trainer) of the recipe's finetuning on finetune_corpus_path, from scratch or from the
    params at reading_params_path; num_workers as the cohort's helper has it (4, or 0 in Fall 2025)."""
    if reading_params_path is not None:
        load_params(model, reading_params_path, pretrain_dataset.itos)
    text = read_text(finetune_corpus_path, "finetuning corpus")
    finetune_dataset = NameDataset(pretrain_dataset, text, source=finetune_corpus_path)
    schedule = pretrain_dataset.course.finetune_schedule(len(pretrain_dataset), block_size,
                                                         pretrained=reading_params_path is not None,
                                                         learning_rate=finetune_lr)
    config = TrainerConfig(**schedule, num_workers=pretrain_dataset.course.finetune_num_workers, writer=writer,
                           device=resolve_device("auto"), desc="finetune")
    return config, Trainer(model, finetune_dataset, None, config)


def train(model, writing_params_path, trainer):
    """Train with trainer's config and this project's fast paths, write the params; returns the Trainer that trained."""
    fast = speed.resolve(trainer.device).trainer_options(trainer.train_dataset, trainer.config.batch_size)
    trainer = Trainer(model, trainer.train_dataset, trainer.test_dataset, replace(trainer.config, **fast))
    trainer.train()
    save_params(model, writing_params_path, trainer.train_dataset.itos)
    return trainer
