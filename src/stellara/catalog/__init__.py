"""The model catalog: per provider model, its limits, prices and capabilities.

The data ships with the package (`data.yaml`), so pricing works offline and the same on every
process; the config's `catalog:` section overrides or adds entries. `Catalog.cost_usd` prices
a call from the usage the provider reported.
"""

from stellara.catalog.cost import cost_usd
from stellara.catalog.models import Capability, CatalogEntry, LongContextPrices
from stellara.catalog.table import Catalog

__all__ = ["Capability", "Catalog", "CatalogEntry", "LongContextPrices", "cost_usd"]
