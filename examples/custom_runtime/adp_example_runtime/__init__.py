"""A complete custom runtime: the model proposes an arithmetic expression, a real calculator
(Python's ast, no eval) computes it, the result goes back, the model gives the final answer.

Install it next to the platform (`pip install ./examples/custom_runtime`) and run
`adp runtime calc`: its task_type is "reasoning", so it joins consumer group
adp-runtime-reasoning and takes reasoning tasks. Started beside `adp runtime reasoning`, the two
share those tasks partition by partition; run one or the other (docs/tasks.md, "Custom
runtimes").
"""

from __future__ import annotations

import ast
import operator
import re
import time
from typing import ClassVar

from adp.runtimes.base import EmitStep, Outcome, RuntimeContext, StepReport
from adp.schemas.contracts import ErrorType, Task

PROMPT = (
    "Solve the task. To compute, reply with `CALC: <arithmetic expression>`. "
    "When you know the answer, reply with `FINAL ANSWER: <answer>`."
)
OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.Mod: operator.mod,
    ast.FloorDiv: operator.floordiv,
}


def calculate(expression: str) -> str:
    """The tool: evaluates + - * / ** % // on numbers, nothing else."""

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in OPS:
            return OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in OPS:
            return OPS[type(node.op)](ev(node.operand))
        raise ValueError(f"unsupported expression element: {ast.dump(node)[:80]}")

    try:
        return str(ev(ast.parse(expression, mode="eval").body))
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError) as exc:
        return f"error: {exc}"


class CalculatorRuntime:
    # which adp.tasks.<type> lanes it consumes, in group adp-runtime-<type>: the built-in
    # reasoning runtime's group, so the two must not run side by side
    task_type: ClassVar[str] = "reasoning"

    def __init__(self, ctx: RuntimeContext):
        self.model = ctx.model

    async def __aenter__(self) -> CalculatorRuntime:
        return self  # open pools (browsers, connections) here

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def run(self, task: Task, emit: EmitStep) -> Outcome:
        messages = [
            {"role": "system", "content": PROMPT},
            {"role": "user", "content": task.description},
        ]
        for _ in range(task.max_steps):
            started = time.time()
            reply = await self.model.chat(messages)
            final = re.search(r"FINAL ANSWER:\s*(.*)", reply.content, re.S)
            calc = re.search(r"CALC:\s*(.+)", reply.content)
            if final or not calc:
                answer = (final.group(1) if final else reply.content).strip()
                # the attempt numbers the steps (step_id 1..n in the order they are reported)
                await emit(
                    StepReport(
                        action_type="final_answer",
                        action_params={"answer": answer},
                        observation="",
                        success=True,
                        timestamp=started,
                        duration=time.time() - started,
                        llm=reply.exchange,
                    )
                )
                return Outcome(True, answer)
            result = calculate(calc.group(1).strip())
            await emit(
                StepReport(
                    action_type="calculate",
                    action_params={"expression": calc.group(1).strip()},
                    observation=result,
                    success=not result.startswith("error"),
                    timestamp=started,
                    duration=time.time() - started,
                    llm=reply.exchange,
                )
            )
            messages += [reply.message, {"role": "user", "content": f"Observation: {result}"}]
        return Outcome(False, "", "no final answer", ErrorType.max_steps)
