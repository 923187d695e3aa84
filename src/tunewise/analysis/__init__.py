"""Reading a stored run: the report's typed schema (`analysis.model`), a run turned into it
(`analysis.build`), paired tests (`analysis.stats`), costs, the recommendation (`analysis.decision`),
the framework's table (`analysis.framework`) and learning curves. Nothing here renders."""
