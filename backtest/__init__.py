"""``churnwatch backtest``: did the customers the rules flagged before a cut-off actually leave?

- :mod:`backtest.outcome`: who is judged (the population) and who churned, from the history alone;
- :mod:`backtest.scoring`: the pure figures (flagged per view, precision, recall, F1, lead time, AUC);
- :mod:`backtest.run`: the replay up to the cut-off (the worker's own code, :mod:`stream.replay`);
- :mod:`backtest.report`: the report's one schema, its table and JSON; :mod:`backtest.html` its charts.
"""
