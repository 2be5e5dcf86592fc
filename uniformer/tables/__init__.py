"""Paper tables as data: specs, report rendering (md/csv/tex/figure) and the CI regression gate."""
