"""Stage 3: cleaning one generated input, and filtering a batch of candidates."""

import pytest

from psilm.stages.filter import FilterSettings, filter_instances
from psilm.stages.filter.clean import PREAMBLE_PATTERNS, clean_input, first_question, is_one_question
from psilm.tasks import Example, load_task

SST2 = load_task("sst2")
TREC = load_task("trec")
GSM8K = load_task("gsm8k")
MC = load_task(
    {
        "name": "mc",
        "kind": "multiple_choice",
        "description": "Pick one.",
        "choices_field": "choices",
        "input_name": "question",
    }
)

# real rows from the public data sets: these must pass through untouched
REAL = [
    (
        SST2,
        "a stirring , funny and finally transporting re-imagining of beauty and the beast "
        "and 1930s horror films",
    ),
    (
        SST2,
        "definitely funny stuff , but it 's more of the ` laughing at ' variety than the ` laughing with . '",
    ),
    (SST2, "so young , so smart , such talent , such a wise \\*\\*\\* ."),
    (SST2, "i am sorry that i was unable to get the full brunt of the comedy ."),
    (SST2, "sure , it 's predictable , but it 's also a lot of fun ."),
    (SST2, "I can't help but smile at this sweet , silly movie ."),
    (TREC, "What films featured the character Popeye Doyle ?"),
    (
        TREC,
        "How does light travel through the void of space if there is no medium for it to "
        "` wave ' or ` pulse ' .",
    ),
    (
        GSM8K,
        "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
        "How many clips did Natalia sell altogether in April and May?",
    ),
    (
        GSM8K,
        "Monroe has a collection of ants and a collection of spiders. He has 8 spiders and 12 ants. "
        "He is wondering what the number of legs of the entire collection is.",
    ),
    (GSM8K, "As an AI researcher, Maria earns $40 an hour. How much does she earn in 8 hours?"),
    (MC, "What is the capital of France?\nA. Paris\nB. London\nC. Rome\nD. Berlin"),
]


@pytest.mark.parametrize("task,text", REAL)
def test_real_inputs_pass_unchanged(task, text):
    assert clean_input(text, task) == (text, None)


CLEANED = [
    # preambles
    (
        SST2,
        "Here's a new review:\n\nthe film is a joyous ride from start to finish .",
        "the film is a joyous ride from start to finish .",
    ),
    (
        SST2,
        "Sure! Here is a new movie review: the acting is wooden and the plot drags .",
        "the acting is wooden and the plot drags .",
    ),
    (
        SST2,
        "New movie review: the acting is wooden and the plot drags .",
        "the acting is wooden and the plot drags .",
    ),
    (SST2, "Review: the acting is wooden and the plot drags .", "the acting is wooden and the plot drags ."),
    (
        SST2,
        "movie review: the acting is wooden and the plot drags .",
        "the acting is wooden and the plot drags .",
    ),
    (SST2, "New review (negative): the acting is wooden .", "the acting is wooden ."),
    (TREC, "Question: Who invented the telephone?", "Who invented the telephone?"),
    # quotes and markdown
    (SST2, '"the acting is wooden and the plot drags ."', "the acting is wooden and the plot drags ."),
    (
        SST2,
        "\u201cthe acting is wooden and the plot drags .\u201d",
        "the acting is wooden and the plot drags .",
    ),
    (
        SST2,
        "**The Dark Knight**\n\nA **brilliant** and *gripping* thriller.",
        "A brilliant and gripping thriller.",
    ),
    (
        SST2,
        "# A Night Out\nthe acting is wooden and the plot drags .",
        "the acting is wooden and the plot drags .",
    ),
    (
        SST2,
        'Sure, here\'s a new review for you:\n\nTitle: "Echoes"\n\nReview: "Echoes" stays with you for days.',
        '"Echoes" stays with you for days.',
    ),
    (
        TREC,
        "Sure! Here is a new question:\n\n**Who wrote the novel Moby Dick?**",
        "Who wrote the novel Moby Dick?",
    ),
    # trailing label and commentary, and labels stated up front
    (SST2, "the movie is a delight .\nLabel: positive", "the movie is a delight ."),
    (
        SST2,
        "the movie is a delight .\n\nThis review is positive because it praises the film.",
        "the movie is a delight .",
    ),
    (SST2, "the movie is a delight .\npositive", "the movie is a delight ."),
    (SST2, "the movie is a delight . (Sentiment: positive)", "the movie is a delight ."),
    (SST2, "Positive\nthe movie is a delight .", "the movie is a delight ."),
    (SST2, "Negative: the acting is wooden .", "the acting is wooden ."),
    (
        TREC,
        "Here is a new question:\nWhat is the capital of France?\nCategory: location",
        "What is the capital of France?",
    ),
    # several candidates: keep the first
    (SST2, "1. the movie is a delight .\n2. a boring , tedious film .", "the movie is a delight ."),
    (
        SST2,
        "Review 1: the movie is a delight .\nReview 2: a boring , tedious film .",
        "the movie is a delight .",
    ),
    (SST2, "the movie is a delight .\n\na boring , tedious film .", "the movie is a delight ."),
    # half a markdown pair, half a pair of quotes, a one-word bold title
    (SST2, '"the acting is wooden and the plot drags .', "the acting is wooden and the plot drags ."),
    (SST2, "the acting is wooden and the plot drags .**", "the acting is wooden and the plot drags ."),
    (
        SST2,
        "**Inception**\n\nthe acting is wooden and the plot drags .",
        "the acting is wooden and the plot drags .",
    ),
    (TREC, "Label: unknown\nWhat is the oldest profession ?", "What is the oldest profession ?"),
    (SST2, "the movie is a delight .\n2. a boring , tedious film .", "the movie is a delight ."),
    (
        GSM8K,
        "Sara has 12 pens. She gives 4 away. How many are left?\nI hope you like it!\npositive",
        "Sara has 12 pens. She gives 4 away. How many are left?",
    ),
    # a word problem with its solution attached
    (
        GSM8K,
        "Here is a new math problem:\nSara has 12 pens. She gives 4 away. How many are left?\nAnswer: 8",
        "Sara has 12 pens. She gives 4 away. How many are left?",
    ),
    (
        GSM8K,
        "Sara has 12 pens. She gives 4 away. How many are left? She has 12 - 4 = 8 left.",
        "Sara has 12 pens. She gives 4 away. How many are left?",
    ),
    (
        MC,
        "Question: What is the capital of France?\nA. Paris\nB. London\nAnswer: A",
        "What is the capital of France?\nA. Paris\nB. London",
    ),
]


@pytest.mark.parametrize("task,raw,expected", CLEANED)
def test_clean_input_cleans(task, raw, expected):
    assert clean_input(raw, task) == (expected, None)


DROPPED = [
    (SST2, "", "empty"),
    (SST2, "   \n ", "empty"),
    (SST2, "Here's a new review:", "empty"),
    (SST2, "As a chatbot, I can't write movie reviews.", "refusal"),
    (SST2, "I'm sorry, but I cannot help with that request.", "refusal"),
    (SST2, "As an AI language model, I do not have personal opinions about films.", "refusal"),
    (SST2, "Sure! As an AI, I cannot watch movies.", "refusal"),
    (SST2, "**As an AI**, I do not watch movies.", "refusal"),
    (SST2, "great", "too_short"),
    (SST2, "the film " * 120, "too_long"),
    (SST2, "# A Night at the Movies", "title_only"),
    (SST2, "The Dark Knight Rises", "title_only"),
    (SST2, "Here's a new review:\n**The Dark Knight Rises**", "title_only"),
    (GSM8K, "Tom likes apples and is always happy about them.", "off_format"),
    (GSM8K, "Tom has 5 apples and buys 3 more apples at the shop.", "off_format"),
]


@pytest.mark.parametrize("task,raw,reason", DROPPED)
def test_clean_input_drops(task, raw, reason):
    assert clean_input(raw, task) == (None, reason)


@pytest.mark.parametrize("task,raw", [(t, r) for t, r, _ in CLEANED] + REAL)
def test_clean_input_is_idempotent(task, raw):
    once, _ = clean_input(raw, task)
    assert clean_input(once, task) == (once, None)


def test_preambles_are_an_extendable_list():
    assert isinstance(PREAMBLE_PATTERNS, list) and len(PREAMBLE_PATTERNS) >= 3


def test_length_limits_are_settable():
    assert clean_input("great fun", SST2, min_chars=5) == ("great fun", None)
    assert clean_input("the acting is wooden .", SST2, max_chars=10) == (None, "too_long")


# --- filter_instances -----------------------------------------------------------------------

SEEDS = [
    Example(
        "a warm , funny , engaging film about growing up in a small town .",
        "positive",
        "positive",
        "positive",
    ),
    Example(
        "the plot is a tired retread of every heist movie you have seen .", "negative", "negative", "negative"
    ),
]
TEST = [
    Example(
        "an utterly charming and hilarious film that rewards patience .", "positive", "positive", "positive"
    )
]
SENTENCES = [
    "the cast is terrific and the script crackles with wit from the first scene",
    "a dreary , overlong slog that never finds its footing or its point",
    "visually stunning but emotionally hollow , this epic drags in its second half",
    "one of the most moving documentaries about music made in the last decade",
    "the jokes land with a thud and the romance has no spark whatsoever",
    "a smart thriller that keeps you guessing until its very last frame",
]


def rec(i, text, answer="positive", votes=None, parse_error=None, category=None, raw=None):
    return {
        "id": f"c{i}",
        "mode": "psi",
        "input": text,
        "raw_input": raw if raw is not None else text,
        "output": answer,
        "answer": answer,
        "category": category or answer,
        "principle_ids": ["t1"],
        "votes": votes,
        "parse_error": parse_error,
        "generator": "smollm2-135m",
    }


def run(cands, task=SST2, seeds=SEEDS, test=TEST, **kw):
    return filter_instances(task, cands, seeds, test, FilterSettings(**kw))


def reasons_by_id(cands, kept, report):
    return {r["id"] for r in kept}, report["dropped"]


def test_each_filter_drops_with_its_reason():
    cands = [
        rec(0, SENTENCES[0]),  # kept
        rec(1, "", parse_error="no_input"),
        rec(2, "As an AI language model, I cannot write reviews."),
        rec(3, SENTENCES[1], answer=None),
        rec(4, SENTENCES[2], answer="neutral"),
        rec(5, SENTENCES[0] + " !"),  # exact duplicate after normalisation
        rec(6, "The Cast is terrific and the script crackles with wit from the first scene ."),
        rec(7, "a warm , funny , engaging film about growing up in a small town ."),  # a seed
        rec(8, "An utterly charming and hilarious film that rewards patience!"),  # a test row
        rec(9, SENTENCES[3], votes=["positive", "negative", "negative"]),
        rec(10, SENTENCES[4], answer="negative", votes=["negative", "positive"]),
        rec(11, SENTENCES[5], votes=["positive", "positive", "negative"]),  # kept: majority agrees
        rec(12, "hi"),
    ]
    kept, report = run(cands)
    assert [r["id"] for r in kept] == ["c0", "c11"]
    assert report["dropped"] == {
        "parse:no_input": 1,
        "refusal": 1,
        "no_answer": 1,
        "bad_label": 1,
        "exact_duplicate": 2,
        "contaminated_seed": 1,
        "contaminated_test": 1,
        "inconsistent": 1,
        "tie": 1,
        "too_short": 1,
    }
    assert report["n_in"] == 13 and report["n_kept"] == 2
    assert report["drop_share"] == pytest.approx(11 / 13, abs=1e-3)
    assert sum(report["dropped"].values()) == report["n_in"] - report["n_kept"]
    assert report["examples"]["refusal"] == ["As an AI language model, I cannot write reviews."]
    assert report["per_category_kept"] == {"positive": 2}


def test_kept_records_keep_their_fields_with_the_cleaned_input():
    raw = "Here's a new review:\n\n" + SENTENCES[0] + "\nLabel: positive"
    cand = rec(0, raw, votes=["positive"] * 3)
    kept, report = run([cand])
    assert kept == [{**cand, "input": SENTENCES[0]}]
    assert report["cleaned"] == {"any": 1, "commentary": 1, "preamble": 1}
    assert report["warning"] is None


def test_cleaned_counts_come_from_the_raw_text_the_generator_cleaned():
    raw = "Sure! Review: **" + SENTENCES[0] + "**"
    cand = rec(0, clean_input(raw, SST2)[0], raw=raw)  # as the generate stage writes it
    kept, report = run([cand])
    assert kept[0]["input"] == SENTENCES[0]
    assert report["cleaned"] == {"any": 1, "markdown": 1, "preamble": 1}
    # a question parsed out of a question-and-answer response: the answer line is not "cleaned"
    q = "Which planet is largest?\nA. Mars\nB. Jupiter"
    _, report = filter_instances(
        MC, [rec(0, q, answer="B", raw=q + "\nAnswer: B")], [], None, FilterSettings()
    )
    assert report["cleaned"] == {}


def test_near_duplicates_are_dropped_and_the_first_kept():
    base = "the cast is terrific and the script crackles with wit from the first scene to the very last one"
    near = base.replace("very last one", "very last one too")
    kept, report = run([rec(0, base), rec(1, near), rec(2, SENTENCES[1])])
    assert [r["id"] for r in kept] == ["c0", "c2"]
    assert report["dropped"] == {"near_duplicate": 1}


def test_short_texts_compare_words_not_letters():
    cands = [
        rec(0, "What does NASA stand for ?", "abbreviation"),
        rec(1, "What does the NASA stand for?", "abbreviation"),  # a word added: a copy
        rec(2, "What does NASDAQ stand for ?", "abbreviation"),  # another question
        rec(3, "Who was the 16th president of the United States ?", "human"),
        rec(4, "Who was the 23rd president of the United States ?", "human"),
    ]
    kept, report = filter_instances(TREC, cands, [], None, FilterSettings())
    assert [r["id"] for r in kept] == ["c0", "c2", "c3", "c4"]
    assert report["dropped"] == {"near_duplicate": 1}
    kept, report = filter_instances(TREC, cands, [], None, FilterSettings(fuzzy_ratio=None))
    assert len(kept) == 5


def test_a_dropped_record_does_not_knock_out_its_duplicate():
    kept, report = run([rec(0, SENTENCES[0], answer="neutral"), rec(1, SENTENCES[0])])
    assert [r["id"] for r in kept] == ["c1"]
    assert report["dropped"] == {"bad_label": 1}


def test_decontamination_near_matches_and_switch():
    seed_copy = "a warm , funny and engaging film about growing up in a small town ."
    test_copy = "an utterly charming and hilarious film that rewards your patience ."
    cands = [rec(0, seed_copy), rec(1, test_copy)]
    _, report = run(cands)
    assert report["dropped"] == {"contaminated_seed": 1, "contaminated_test": 1}
    kept, report = run(cands, test=None)
    assert report["dropped"] == {"contaminated_seed": 1} and [r["id"] for r in kept] == ["c1"]
    kept, report = run(cands, decontaminate=False)
    assert report["dropped"] == {} and len(kept) == 2


def test_consistency_votes():
    cands = [
        rec(0, SENTENCES[0], votes=["positive", "positive", "negative"]),  # majority agrees
        rec(1, SENTENCES[1], votes=["negative", "negative", "positive"]),  # majority disagrees
        rec(2, SENTENCES[2], votes=["positive", "negative"]),  # tie
        rec(3, SENTENCES[3], votes=[None, "positive", ""]),  # unreadable votes are not counted
        rec(4, SENTENCES[4], votes=[None, None]),
        rec(5, SENTENCES[5], votes=[]),  # no votes: nothing to check
    ]
    kept, report = run(cands)
    assert [r["id"] for r in kept] == ["c0", "c3", "c5"]
    assert report["dropped"] == {"inconsistent": 2, "tie": 1}
    kept, report = run(cands, consistency=False)
    assert len(kept) == 6


def test_over_filtering_warning_past_the_threshold_only():
    dupes = [rec(i, SENTENCES[0]) for i in range(9)] + [rec(9, SENTENCES[1])]
    _, report = run(dupes)
    assert report["drop_share"] == pytest.approx(0.8)
    assert report["warning"].startswith(
        "filters dropped 80% of 10 candidates (limit 70%): mostly exact_duplicate (8)"
    )
    assert "filter_report.json" in report["warning"]
    _, report = run(dupes, max_drop_share=0.85)
    assert report["warning"] is None
    _, report = run([])
    assert report["n_in"] == 0 and report["warning"]


def test_numeric_task_answers_and_format():
    ok = "Sara has 12 pens. She gives 4 away. How many are left?"
    cands = [
        {**rec(0, ok, answer="8", votes=["8", "8.0", "7"]), "category": None},
        rec(1, "Sara has pens and likes them very much.", answer="8"),
        rec(2, "Ben has 3 cats and 2 dogs. How many pets does he have?", answer="five"),
        rec(3, "Ben has 3 cats and 4 dogs. How many pets does he have?", answer="7", votes=["7", "6"]),
        # the generator's majority tied, so it wrote no answer: a tie, not a missing answer
        rec(4, "Ben has 5 cats and 4 dogs. How many pets does he have?", answer=None, votes=["9", "8"]),
        rec(5, "Ben has 6 cats and 4 dogs. How many pets does he have?", answer=None, votes=[None, None]),
    ]
    kept, report = filter_instances(GSM8K, cands, [], None, FilterSettings())
    assert [r["id"] for r in kept] == ["c0"]
    assert report["dropped"] == {"off_format": 1, "bad_number": 1, "tie": 2, "no_answer": 1}
    assert report["per_category_kept"] == {"None": 1}


def test_multiple_choice_letters():
    q = "Which planet is largest?\nA. Mars\nB. Jupiter\nC. Venus"
    cands = [
        rec(0, q, answer="B"),
        rec(1, q.replace("largest", "smallest"), answer="D"),
        rec(2, q + "?", answer="b"),
    ]
    kept, report = filter_instances(MC, cands, [], None, FilterSettings())
    assert [r["id"] for r in kept] == ["c0"]
    assert report["dropped"] == {"bad_letter": 2}


# --- tasks whose inputs are one question -----------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "question"),
    [
        ('Here is one with the answer "Where is the Orange Bowl?" that asks.', "Where is the Orange Bowl?"),
        ("Q: Is the Bowl in Peru or the USA?\nA: In the USA.", "Is the Bowl in Peru or the USA?"),
        ("I'll write one.\n\nIt is: \"How far is Denver from Aspen?\"", "How far is Denver from Aspen?"),
        ("Who was Dr. Seuss ?", "Who was Dr. Seuss ?"),  # an abbreviation is not a sentence end
        ("What does N.A.S.A. stand for ?", "What does N.A.S.A. stand for ?"),
        ("I'm ready to help. What question would you like to ask?", "What question would you like to ask?"),
        ("I'd like you to be a helpful AI named SmolLM. I'm ready.", None),
        ("The answer for this question is:", None),
        ("Why?", None),  # too few words to be a question of the task
    ],
)  # fmt: skip
def test_first_question(raw, question):
    assert first_question(raw) == question


def test_one_question_tasks_are_told_by_their_seeds():
    assert is_one_question("What films featured the character Popeye Doyle ?")
    assert not is_one_question(REAL[-2][1])  # a GSM8K word problem ends with a question, but is more
    assert not is_one_question("a stirring , funny and finally transporting re-imagining .")


def test_one_question_filter_keeps_the_question_and_drops_the_rest():
    seeds = [
        TREC.example({"text": t, "label_name": lab})
        for t, lab in [
            ("What is the capital of Peru ?", "location"),
            ("Who wrote Hamlet ?", "human"),
            ("How many legs does a spider have ?", "numeric"),
            ("What does NASA stand for ?", "abbreviation"),
        ]
    ]
    cands = [
        rec(0, 'Here is a question: "Where is the Orange Bowl played?" It asks where.', answer="location"),
        rec(1, "I'd like you to be a helpful AI named SmolLM. I'm ready when you're ready.", answer="human"),
        rec(2, "Which river runs through Vienna?", answer="location"),
    ]
    kept, report = run(cands, task=TREC, seeds=seeds, test=[], one_question=None)  # auto: on here
    assert [r["input"] for r in kept] == [
        "Where is the Orange Bowl played?",
        "Which river runs through Vienna?",
    ]
    assert report["dropped"] == {"not_a_question": 1} and report["cleaned"]["not_the_question"] == 1
    off, report = run(cands, task=TREC, seeds=seeds, test=[], one_question=False)
    assert len(off) == 3 and "not_a_question" not in report["dropped"]
    assert len(run(cands, task=TREC, seeds=seeds, test=[])[0]) == 3  # off by default
    # reviews are not questions: auto leaves the rule off, and the SST-2 filter is unchanged
    kept, _ = run([rec(0, SENTENCES[0])], one_question=None)
    assert len(kept) == 1


# --- talk about the task instead of an instance of it (what a 135M chat model wrote for the demo)
TALK = [
    (
        SST2,
        "This sentence is a perfect example of a positive review, as it's full of praise.",
        "describes_input",
    ),
    (SST2, "This review expresses a negative opinion about the film.", "describes_input"),
    (SST2, "It is a negative movie review about a boring film.", "describes_input"),
    (TREC, "This question asks for the name of a person.", "describes_input"),
    (TREC, 'Write a new question labelled "human" about a famous inventor.', "instruction"),
    (SST2, "Create a positive movie review for the film Titanic.", "instruction"),
    (SST2, "But here is my attempt: In 1980s, the film", "announcement"),
    (SST2, 'A film review - "The Hunger Games trilogy"', "announcement"),
    (SST2, "Sure, here you go! I loved every minute of it.", "announcement"),
    (TREC, "Here you go: a question about the Moon.", "announcement"),
    (SST2, "As an AI, I do not have opinions about movies.", "refusal"),
]


@pytest.mark.parametrize("task,raw,reason", TALK)
def test_talk_about_the_task_is_dropped_with_its_reason(task, raw, reason):
    assert clean_input(raw, task) == (None, reason)


def test_talk_patterns_leave_real_rows_alone():
    import json
    from pathlib import Path

    from psilm.stages.filter.clean import _nouns, talks_about_task

    data = Path(__file__).resolve().parents[1] / "data"
    for task, name, field in [(SST2, "sst2", "text"), (TREC, "trec", "text"), (GSM8K, "gsm8k", "question")]:
        rows = [json.loads(x)[field] for x in (data / name / "train.jsonl").read_text().splitlines()]
        hits = [r for r in rows if talks_about_task(r, _nouns(task))]
        assert len(hits) <= len(rows) // 1000, hits[:5]  # at most 0.1% of real rows


def test_unfinished_inputs_are_dropped_where_the_seeds_end_their_sentences():
    cands = [
        rec(0, "The film was..."),
        rec(1, "a dreary , overlong slog that never finds its footing , and the"),
        rec(2, "the cast is terrific and the script crackles with wit ."),  # kept
        rec(3, "a smart thriller that keeps you guessing until its very last frame"),  # kept: ends on a noun
    ]
    kept, report = run(cands)
    assert [r["id"] for r in kept] == ["c2", "c3"]
    assert report["dropped"] == {"unfinished": 2}
    assert report["examples"]["unfinished"] == ["The film was...", cands[1]["raw_input"]]
    # seeds that trail off themselves, or a switch, keep them
    trailing = [Example("the plot thickens ...", "positive", "positive", "positive")] * 2
    assert len(run(cands[:1], seeds=trailing)[0]) == 1
    assert len(run(cands, drop_unfinished=False)[0]) == 4


def test_talk_is_counted_per_reason_in_the_report():
    cands = [rec(i, raw, category="positive") for i, (task, raw, _r) in enumerate(TALK) if task is SST2]
    kept, report = run(cands)
    assert kept == []
    assert report["dropped"] == {"describes_input": 3, "instruction": 1, "announcement": 3, "refusal": 1}
    assert report["examples"]["describes_input"][0].startswith("This sentence is a perfect example")
