"""
XCS224N's helper API (src/submission/helper.py of its handout), over this project's modules.

    mconf = GPTConfig(pretrain_dataset.vocab_size, pretrain_dataset.block_size)
    model = initialize_vanilla_model(mconf)
    trainer_config, trainer = pretrain(pretrain_dataset, 128, model)
    train(model, "submission/vanilla.pretrain.params", trainer)

pretrain() and finetune() return the course's recipe (what its grader checks), that of the
pretraining dataset's course (course.py): XCS224N for this package's CharCorruptionDataset. Its Fall 2025
(RoPE) cohort, whose helper finetunes with num_workers 0, is CharCorruptionDataset(text, 128, course="xcs224n-2025").
train() runs it with this project's fast paths (speed.py) and writes the params.
"""
import speed
from dataset import NameDataset
from model import GPT
from params import load_params, save_params
from trainer import Trainer
from utils import read_text, resolve_device

NUM_WORKERS = 4  # the course's value when pretraining (finetuning: the cohort's); train() uses what helps on the device


def initialize_vanilla_model(mconf):
    return GPT(mconf)


def initialize_rope_model(mconf):
    mconf.rope = True
    return GPT(mconf)


def initialize_synthesizer_model(mconf):
    mconf.synthesizer = True
    return GPT(mconf)


def pretrain(pretrain_dataset, block_size, model, pretrain_lr=6e-3, writer=None):
    """(trainer_config, trainer) of span-corruption pretraining: 650 epochs, batch 128, lr pretrain_lr."""
    config = pretrain_dataset.course.pretrain_config(len(pretrain_dataset), block_size, learning_rate=pretrain_lr,
                                                     num_workers=NUM_WORKERS, writer=writer,
                                                     device=resolve_device("auto"), desc="pretrain")
    return config, Trainer(model, pretrain_dataset, None, config)


def finetune(reading_params_path, finetune_corpus_path, pretrain_dataset, block_size, model, finetune_lr=6e-4,
             writer=None):
    """(trainer_config, trainer) of finetuning on the question<TAB>answer file finetune_corpus_path:
    75 epochs from scratch, or 10 after loading the params at reading_params_path into model; num_workers
    as the pretraining dataset's cohort's helper has it (4, or 0 in Fall 2025)."""
    if reading_params_path is not None:
        load_params(model, reading_params_path, pretrain_dataset.itos)
    text = read_text(finetune_corpus_path, "finetuning corpus")
    finetune_dataset = NameDataset(pretrain_dataset, text, source=finetune_corpus_path)
    config = pretrain_dataset.course.finetune_config(len(pretrain_dataset), block_size,
                                                     pretrained=reading_params_path is not None,
                                                     learning_rate=finetune_lr,
                                                     num_workers=pretrain_dataset.course.finetune_num_workers,
                                                     writer=writer, device=resolve_device("auto"), desc="finetune")
    return config, Trainer(model, finetune_dataset, None, config)


def train(model, writing_params_path, trainer):
    """Train, then write model's params to writing_params_path (a state dict, as src/run.py writes it)."""
    speed.resolve(trainer.device).configure(trainer.config, trainer.train_dataset)
    trainer.train()
    save_params(model, writing_params_path, trainer.train_dataset.itos)
