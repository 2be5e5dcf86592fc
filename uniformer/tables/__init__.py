"""Paper tables: what each profile trains and evaluates (``spec``; the tables themselves are declared in
``uniformer.tasks``), report rendering (md/csv/tex/figure) and the CI regression gate."""
