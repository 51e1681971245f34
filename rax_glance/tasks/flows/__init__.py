"""TaskFlow flows of the Cloud Images tasks (`rax_glance.flows` entry points).

Each entry point names a flow plugin class: `build(job)` returns a TaskFlow flow of small
tasks each with a revert, `result(job, storage)` the task's `result`, and `cleanup(job, work)`
removes what a flow interrupted by a dead process left (its recorded work).
"""
