"""The baseline workflow: starts and completes, nothing else (a module of its own, because the
workflow sandbox re-imports a workflow's module, which ``__main__`` cannot be)."""

from temporalio import workflow


@workflow.defn(name="BenchNothing")
class Nothing:
    @workflow.run
    async def run(self) -> str:
        return "done"
