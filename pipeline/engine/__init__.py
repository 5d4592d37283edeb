"""The recipe-agnostic core: stage contract and registry, recipes as plain objects, the scheduler
(queues, timers, durability gate), outcomes (done / retry at T / wait / park / fail), accounts
and pacing, the governor, the estimator, clocks and executors (threads, Dask).

It imports no recipe: recipes are found through entry points and reach the engine only
through their :class:`~pipeline.engine.recipe.Recipe` object.
"""
