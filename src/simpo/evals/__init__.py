"""Benchmarks of the SimPO model cards: AlpacaEval 2, Arena-Hard, ZeroEval GSM and MMLU, judges, the table."""
