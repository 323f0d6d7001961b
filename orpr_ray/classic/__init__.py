"""The classic lost-sales benchmark (issue 8): exact optimum, classic heuristics, simulation.

Single item, i.i.d. integer demand, lead time L >= 1, lost sales, holding and lost-sales penalty
costs, long-run average cost. Self-contained: it uses no retail Dataset. See docs/CLASSIC.md.
"""
