"""A third-party verifier: the final answer has at most `max_words` words."""

from adp.runtimes.verify import BadSpec, Judgement


class WordCountVerifier:
    name = "wordcount"

    def check(self, spec):
        if not isinstance(spec.get("max_words"), int) or spec["max_words"] < 1:
            raise BadSpec("verify.max_words: a positive integer")

    async def verify(self, spec, subject, ctx):
        words = len(subject.final_result.split())
        return Judgement(
            words <= spec["max_words"], None, f"{words} words (at most {spec['max_words']})"
        )
