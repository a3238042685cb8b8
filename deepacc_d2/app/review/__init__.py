"""The review page: a person corrects a karyotype case in the browser (``deepacc review``)."""
