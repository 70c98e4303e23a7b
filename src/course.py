"""
The recipe of the assignment, and the courses that teach it: every hyperparameter of a run lives here.

CS224N (the default) and XCS224N's two cohorts share the recipe's sizes, epochs, batch sizes and learning rates;
they differ in the span corruption and the pretraining schedule (Course's first fields) and in what their
handouts run. run.py, tools/bench.py, run.sh (through runs.py) and the submission package read them from here.

    course = get_course("xcs224n")
    ds = CharCorruptionDataset(text, RECIPE.block_size, course=course)
    config = TrainerConfig(**course.pretrain_schedule(len(ds), RECIPE.block_size))
"""
from dataclasses import dataclass, replace

from model import VARIANTS


@dataclass(frozen=True)
class Recipe:
    block_size: int = 128
    bottleneck_dim: int = 32  # the perceiver's latent slots by default ...
    handout_bottleneck_dim: int = 64  # ... and in the handout's runs
    warmup_tokens: int = 512 * 20  # both phases
    pretrain_epochs: int = 650
    pretrain_batch_size: int = 128
    pretrain_lr: float = 6e-3
    finetune_epochs_from_scratch: int = 75
    finetune_epochs_pretrained: int = 10  # from --reading_params_path
    finetune_batch_size: int = 256
    finetune_lr: float = 6e-4
    finetune_final_epochs: int = 200  # finetuning final_tokens = this * len(pretrain_dataset) * block_size
    num_workers: int = 4  # the course's DataLoader workers


RECIPE = Recipe()


@dataclass(frozen=True)
class Course:
    name: str
    truncation_fraction: float  # documents are truncated to U{4..int(block_size * this)}
    mask_after_content: bool  # a third MASK ends the masked content: prefix ⁇ suffix ⁇ masked ⁇ □□□
    pretrain_final_epochs: "int | None"  # pretraining final_tokens = this * len(dataset) * block_size; None: max_epochs
    clamp_progress: bool  # the cosine stays at its floor past final_tokens; unclamped, the lr rises again
    # the cohort's handout: the variants its run.sh trains, and its helper's DataLoader workers when finetuning
    variants: tuple = VARIANTS
    finetune_num_workers: int = RECIPE.num_workers

    @property
    def n_masks(self):
        """MASK characters in a span-corruption example."""
        return 3 if self.mask_after_content else 2

    def pretrain_schedule(self, n_documents, block_size, max_epochs=None, batch_size=None, learning_rate=None):
        """The TrainerConfig fields of the recipe's pretraining, as a dict; None: the recipe's value."""
        max_epochs = max_epochs or RECIPE.pretrain_epochs
        # CS224N: a shorter run (--pretrain_epochs) still decays to its end
        final_tokens = (self.pretrain_final_epochs or max_epochs) * n_documents * block_size
        return self.schedule(max_epochs, batch_size or RECIPE.pretrain_batch_size,
                             learning_rate or RECIPE.pretrain_lr, final_tokens)

    def finetune_schedule(self, n_documents, block_size, pretrained, max_epochs=None, batch_size=None,
                          learning_rate=None):
        """The same for finetuning; n_documents: len() of the pretraining dataset, as final_tokens counts it."""
        epochs = RECIPE.finetune_epochs_pretrained if pretrained else RECIPE.finetune_epochs_from_scratch
        final_tokens = RECIPE.finetune_final_epochs * n_documents * block_size
        return self.schedule(max_epochs or epochs, batch_size or RECIPE.finetune_batch_size,
                             learning_rate or RECIPE.finetune_lr, final_tokens)

    def schedule(self, max_epochs, batch_size, learning_rate, final_tokens):
        return dict(max_epochs=max_epochs, batch_size=batch_size, learning_rate=learning_rate, lr_decay=True,
                    warmup_tokens=RECIPE.warmup_tokens, final_tokens=final_tokens, clamp_progress=self.clamp_progress)


CS224N = Course("cs224n", truncation_fraction=7 / 8, mask_after_content=False, pretrain_final_epochs=None,
                clamp_progress=True)
# XCS224N's two cohorts share its recipe: the synthesizer year, and Fall 2025, which runs RoPE instead
XCS224N = Course("xcs224n", truncation_fraction=3 / 4, mask_after_content=True, pretrain_final_epochs=200,
                 clamp_progress=False, variants=("vanilla", "synthesizer"))
XCS224N_2025 = replace(XCS224N, name="xcs224n-2025", variants=("vanilla", "rope"), finetune_num_workers=0)
COURSES = {course.name: course for course in (CS224N, XCS224N, XCS224N_2025)}


def get_course(course):
    """The Course for a name ('cs224n', 'xcs224n', 'xcs224n-2025') or a Course."""
    if isinstance(course, Course):
        return course
    if course not in COURSES:
        raise ValueError(f"unknown course {course!r}; choose one of {', '.join(COURSES)}")
    return COURSES[course]
